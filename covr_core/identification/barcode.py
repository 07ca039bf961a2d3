"""Read a book's ISBN from the EAN-13 barcode in a photo, trying cheap decodes first and harder ones only on a miss.

Measured on generated photos (tests/photos.py) rendered at 12 MP, JPEG q70-92, decoded at full (4000x3000) and half
(2000x1500) resolution; zxing-cpp 3.1 on one core of a shared 2-core box, so treat ms as upper bounds:

    attempt              ms full / half   first hit (full | half) over all sets below, 140 photos with a barcode
    whole                  ~40 / ~8             87 | 79
    threshold-35           ~50 / ~12            28 | 33
    threshold-50           ~40 / ~9              7 |  4
    quadrants              ~75 / ~30             1 |  2
    sharpened             ~340 / ~80             9 |  7
    upscaled-quadrants      -  / ~140            - |  2   (below 3000 px only)

    set (photos)                                                        cascade hits full | half
    standard: tilt <=8 deg, blur 0.5-2 px, dim and sideways ones (60)   60 | 60
    tilted 18-30 deg (20)                                               20 | 20
    shadow across the cover (20)                                        20 | 20
    blur 2-3 px (20)                                                    17 | 16
    small: cover fills 40-50% of the frame height (20)                  15 | 11

A photo without a barcode used to run every attempt: ~0.5 s at full resolution, ~0.3 s at half, on every front
cover. Now, once the two cheap attempts miss, the dear ones (threshold-50 onwards) run only where the photo has a
barcode-like region (`barcode_like_share`: a patch of strong, single-direction gradients, ~10 ms at 640 px), so a
front cover pays ~30 ms. On the tuning seeds (0-15, every back condition, 1280x960) the cheap attempts missed 7 back
covers; the gate passed 6 of them and dropped one under glare that upscaled-quadrants had read (its bars split by
the highlight); it passed none of 45 front covers (largest region 0.9% of the frame, barcodes 1.2-5%).
Decoding at half resolution is 4-5x cheaper and matched full resolution except on small or very blurred barcodes.

Why these attempts: zxing's default binariser picks each row's threshold from the whole row, which a dark cover or
table drags down once the bars are blurred; a threshold set from the image's own black and white points (35% of the
way up) keeps blurred gaps white. Crops give each barcode a row of its own; unsharp masking restores blurred edges;
upscaling helps modules under ~2 px. Rotating the image was tried and dropped: zxing read every barcode tilted up to
30 deg by itself, 180 deg is free (EAN-13 reads both ways) and 90/270 deg are covered by try_rotate; rotated copies
found nothing extra and cost ~300 ms each at full resolution.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import accumulate

import numpy as np
import zxingcpp
from PIL import Image, ImageFilter

from covr_core.shared.isbn import is_valid_isbn13

__all__ = ["BarcodeResult", "barcode_like_share", "read_isbn_barcode", "is_isbn_ean13"]

# All formats cost 20-50x more, and a cover carries nothing else we want.
_EAN13 = zxingcpp.BarcodeFormat.EAN13


@dataclass
class BarcodeResult:
    """Outcome of reading one photo: the ISBN if any, every EAN-13 seen, and each attempt with its cost."""

    isbn13: str | None
    codes: list[str] = field(default_factory=list)
    attempts: list[dict] = field(default_factory=list)
    gate_share: float | None = None  # the barcode-like share of the frame, once the cheap attempts missed


def is_isbn_ean13(text: str) -> bool:
    """True for a Bookland EAN-13 (978/979 prefix, valid check digit); price or retailer EAN-13s are False."""
    return text.startswith(("978", "979")) and is_valid_isbn13(text)


def _decode(image: Image.Image, binarizer=None) -> list[str]:
    kwargs = {"formats": _EAN13, "try_rotate": True, "try_downscale": True}
    if binarizer is not None:
        kwargs["binarizer"] = binarizer
    return [b.text for b in zxingcpp.read_barcodes(image, **kwargs)]


def _threshold(image: Image.Image, level: float) -> Image.Image:
    """Binarise at `level` of the way from the image's black point to its white point (1% tails ignored)."""
    below = list(accumulate(image.histogram()))  # below[v]: pixels with value <= v
    total = below[-1]
    cut = total // 100
    black = next(v for v in range(256) if below[v] > cut)
    white = next(v for v in range(255, -1, -1) if total - (below[v - 1] if v else 0) > cut)
    t = black + level * max(1, white - black)
    return image.point([255 if v > t else 0 for v in range(256)])


def _decode_threshold(image: Image.Image, level: float) -> list[str]:
    return _decode(_threshold(image, level), zxingcpp.Binarizer.FixedThreshold)


def _quadrants(image: Image.Image) -> list[Image.Image]:
    """Four overlapping 60% crops: a barcode alone in its crop gets row thresholds that suit it."""
    w, h = image.size
    cw, ch = int(w * 0.6), int(h * 0.6)
    return [image.crop((x, y, x + cw, y + ch)) for y in (0, h - ch) for x in (0, w - cw)]


def _decode_quadrants(image: Image.Image) -> list[str]:
    codes: list[str] = []
    for crop in _quadrants(image):
        codes += _decode(crop)
        codes += _decode_threshold(crop, 0.35)
        if any(is_isbn_ean13(c) for c in codes):
            break
    return codes


def _decode_sharpened(image: Image.Image) -> list[str]:
    # Unsharp masking restores the edges of blurred bars; at ~0.1 s (half) to ~0.35 s (full resolution) it runs only
    # after the cheap attempts missed.
    sharp = image.filter(ImageFilter.UnsharpMask(radius=2, percent=150, threshold=2))
    return _decode(sharp) + _decode_threshold(sharp, 0.35) + _decode_threshold(sharp, 0.50)


def _decode_upscaled_quadrants(image: Image.Image) -> list[str]:
    codes: list[str] = []
    for crop in _quadrants(image):
        big = crop.resize((crop.width * 2, crop.height * 2), Image.Resampling.BICUBIC)
        codes += _decode(big) + _decode_threshold(big, 0.35)
        if any(is_isbn_ean13(c) for c in codes):
            break
    return codes


# Upscaling only helps where a small barcode's modules are under ~2 px, i.e. below full resolution.
_UPSCALE_BELOW = 3000

# The gate's working size, and what counts as barcode-like: coherence (how much one gradient direction dominates a
# 9 px window: bars ~0.9, letters and desk texture lower), gradient strength, and the region's share of the frame.
_GATE_SIDE = 640
_GATE_COHERENCE = 0.75
_GATE_STRENGTH = 40.0
GATE_MIN_SHARE = 0.012
# Attempts always run; the others only when the gate sees a barcode-like region.
_CHEAP = ("whole", "threshold-35")


def barcode_like_share(image: Image.Image) -> float:
    """The largest share of the frame covered by one barcode-like region: parallel edges, strong and in one
    direction, in a compact blob (any angle: the structure tensor does not care which way the bars run)."""
    import cv2

    s = _GATE_SIDE / max(image.size)
    small = image.resize((max(1, round(image.width * s)), max(1, round(image.height * s))), Image.Resampling.BOX)
    arr = np.asarray(small, np.float32)
    gx = cv2.Sobel(arr, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(arr, cv2.CV_32F, 0, 1, ksize=3)
    jxx, jyy, jxy = (cv2.blur(v, (9, 9)) for v in (gx * gx, gy * gy, gx * gy))
    trace = jxx + jyy + 1e-3
    coherence = np.sqrt((jxx - jyy) ** 2 + 4 * jxy**2) / trace
    mask = ((coherence > _GATE_COHERENCE) & (np.sqrt(trace) > _GATE_STRENGTH)).astype(np.uint8) * 255
    mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, np.ones((7, 7), np.uint8))
    mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, np.ones((5, 5), np.uint8))
    n, _, stats, _ = cv2.connectedComponentsWithStats(mask)
    blobs = [area for _, _, w, h, area in stats[1:n] if area >= 0.45 * w * h]
    return max(blobs, default=0) / mask.size


# (name, attempt, largest long side it is worth running on)
_ATTEMPTS: tuple[tuple[str, Callable[[Image.Image], list[str]], int | None], ...] = (
    ("whole", _decode, None),
    ("threshold-35", lambda im: _decode_threshold(im, 0.35), None),
    ("threshold-50", lambda im: _decode_threshold(im, 0.50), None),
    ("quadrants", _decode_quadrants, None),
    ("sharpened", _decode_sharpened, None),
    ("upscaled-quadrants", _decode_upscaled_quadrants, _UPSCALE_BELOW - 1),
)


def read_isbn_barcode(image: Image.Image) -> BarcodeResult:
    """The ISBN from the first attempt that decodes a Bookland EAN-13 in an oriented photo.

    `image` should be grayscale ('L') at full or half resolution of the photo (long side ~2000-4000 px): at a
    quarter, barcodes narrower than ~700 px in the original are lost. Other modes are converted.
    """
    gray = image if image.mode == "L" else image.convert("L")
    result = BarcodeResult(isbn13=None)
    for name, attempt, max_side in _ATTEMPTS:
        if max_side is not None and max(gray.size) > max_side:
            continue
        if name not in _CHEAP and result.gate_share is None:
            start = time.perf_counter()
            result.gate_share = round(float(barcode_like_share(gray)), 4)
            passed = result.gate_share >= GATE_MIN_SHARE
            result.attempts.append({"name": "gate", "ms": round((time.perf_counter() - start) * 1000, 1),
                                    "found": passed})
            if not passed:
                break
        start = time.perf_counter()
        texts = attempt(gray)
        ms = (time.perf_counter() - start) * 1000
        for text in texts:
            if text not in result.codes:
                result.codes.append(text)
        isbn = next((t for t in texts if is_isbn_ean13(t)), None)
        result.attempts.append({"name": name, "ms": round(ms, 1), "found": isbn is not None})
        if isbn is not None:
            result.isbn13 = isbn
            break
    return result
