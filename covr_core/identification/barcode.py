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
    regions: int | None = None  # bar-like regions found and read closely, once the cheap attempts missed


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


def _orientation(arr: np.ndarray, smooth: Callable[[np.ndarray], np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """The structure tensor's coherence (0-1: how much one gradient direction dominates; bars ~0.9, letters and desk
    texture lower) and strength, its components averaged by `smooth` (a blur, or a pooling then a blur)."""
    import cv2

    gx = cv2.Sobel(arr, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(arr, cv2.CV_32F, 0, 1, ksize=3)
    jxx, jyy, jxy = (smooth(v) for v in (gx * gx, gy * gy, gx * gy))
    trace = jxx + jyy + 1e-3
    return np.sqrt((jxx - jyy) ** 2 + 4 * jxy**2) / trace, np.sqrt(trace)


def barcode_like_share(image: Image.Image) -> float:
    """The largest share of the frame covered by one barcode-like region: parallel edges, strong and in one
    direction, in a compact blob (any angle: the structure tensor does not care which way the bars run)."""
    import cv2

    s = _GATE_SIDE / max(image.size)
    small = image.resize((max(1, round(image.width * s)), max(1, round(image.height * s))), Image.Resampling.BOX)
    coherence, strength = _orientation(np.asarray(small, np.float32), lambda v: cv2.blur(v, (9, 9)))
    mask = ((coherence > _GATE_COHERENCE) & (strength > _GATE_STRENGTH)).astype(np.uint8) * 255
    mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, np.ones((7, 7), np.uint8))
    mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, np.ones((5, 5), np.uint8))
    n, _, stats, _ = cv2.connectedComponentsWithStats(mask)
    blobs = [area for _, _, w, h, area in stats[1:n] if area >= 0.45 * w * h]
    return max(blobs, default=0) / mask.size


# Regions: a barcode small in a large frame (12 MP, ~2-3 px per module) is lost in whole-image decodes and in the
# gate's 640 px view, where its bars are sub-pixel. It is found instead from gradients at the image's own resolution:
# the structure tensor, pooled over 4x4 cells and a 5-cell window, marks cells where one strong direction dominates;
# a filled blob of such cells whose profile across the bars swings about its local mean many times is a bar-like
# region, read closely (crops are cheap), and read again from the full-resolution decode when the reduced one is not
# enough. Measured on the hard set at 12 MP, every back condition, decoded at half resolution: before regions the
# cascade read 7 of 30 (seeds 600-605); with them 26 of 30 there, 26 of 30 on seeds 700-705 (used to set the crop
# margin and the sharpened variant) and 27 of 30 on seeds 800-805, never used for tuning, 0 wrong. 3 of 90 front
# covers (800-805) kept a region; the others pay only the locating, ~25 ms at 2000 px.
_REGION_POOL = 4
_REGION_COHERENCE = 0.8
_REGION_STRENGTH = 0.25  # of the frame's 99.5th-percentile gradient strength, so dim photos keep their bars
_REGION_MIN_CELLS = 150  # ~80x30 px: a 95-module EAN-13 at 1 px per module
_REGION_MIN_EDGES = 14  # an EAN-13 has 60 bar edges; text and shapes swing a dozen times at most
_REGION_MAX_ASPECT = 4.0
_REGIONS_READ = 3


def barcode_regions(image: Image.Image) -> list[tuple[int, int, int, int]]:
    """Boxes (x, y, width, height) of the bar-like regions of a grayscale image, largest first, at most three."""
    import cv2

    arr = np.asarray(image)
    cells = (max(1, arr.shape[1] // _REGION_POOL), max(1, arr.shape[0] // _REGION_POOL))
    coherence, strength = _orientation(
        arr, lambda v: cv2.blur(cv2.resize(v, cells, interpolation=cv2.INTER_AREA), (5, 5)))
    floor = max(8.0, _REGION_STRENGTH * float(np.percentile(strength, 99.5)))
    mask = ((coherence > _REGION_COHERENCE) & (strength > floor)).astype(np.uint8) * 255
    mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, np.ones((3, 3), np.uint8))
    mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
    n, _, stats, _ = cv2.connectedComponentsWithStats(mask)
    blobs = sorted(((area, (x, y, w, h)) for x, y, w, h, area in stats[1:n]
                    if area >= _REGION_MIN_CELLS and area >= 0.4 * w * h
                    and max(w, h) <= _REGION_MAX_ASPECT * min(w, h)), reverse=True)
    boxes = []
    for _, (x, y, w, h) in blobs:
        box = (x * _REGION_POOL, y * _REGION_POOL, w * _REGION_POOL, h * _REGION_POOL)
        if _bar_edges(image.crop((box[0], box[1], box[0] + box[2], box[1] + box[3]))) >= _REGION_MIN_EDGES:
            boxes.append(box)
            if len(boxes) == _REGIONS_READ:
                break
    return boxes


def _bars_upright(crop: Image.Image) -> Image.Image:
    """`crop` turned so that its dominant gradient runs along x: bars vertical, whatever their tilt."""
    import cv2

    arr = np.asarray(crop, np.float32)
    gx = cv2.Sobel(arr, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(arr, cv2.CV_32F, 0, 1, ksize=3)
    angle = 0.5 * np.degrees(np.arctan2(2 * float((gx * gy).sum()), float((gx * gx).sum() - (gy * gy).sum())))
    return crop.rotate(angle, resample=Image.Resampling.BICUBIC, expand=True, fillcolor=128)


def _bar_edges(crop: Image.Image) -> int:
    """How often the profile across the bars (the middle rows averaged, bars upright) swings between darker and
    lighter than its local mean (9 px): a global midpoint misses the narrow bars that blur greys out."""
    arr = np.asarray(_bars_upright(crop), np.float32)
    h, w = arr.shape
    profile = arr[h // 4 : 3 * h // 4, w // 8 : 7 * w // 8].mean(axis=0)
    if profile.size < 9:
        return 0
    detail = profile - np.convolve(profile, np.ones(9) / 9, mode="same")
    swing = 0.1 * float(profile.max() - profile.min())
    signs = np.sign(detail[np.abs(detail) > swing])
    return int(np.count_nonzero(signs[1:] != signs[:-1]))


def _region_variants(crop: Image.Image, upscale: bool):
    """Decodes of one region, cheapest first: as it is, binarised, bars upright with noise averaged along them (low
    light), and unsharp-masked (blur); then, when the region comes from a reduced decode (modules near 1 px), the
    same 2x larger, less the sharpening. On a crop each costs a few ms."""
    import cv2

    for image in (crop, crop.resize((crop.width * 2, crop.height * 2), Image.Resampling.BICUBIC))[: 2 if upscale else 1]:
        yield _decode(image)
        yield _decode_threshold(image, 0.5)
        yield _decode_threshold(image, 0.35)
        along = Image.fromarray(cv2.blur(np.asarray(_bars_upright(image)), (1, 7)))
        yield _decode(along)
        yield _decode_threshold(along, 0.35)
        if image is crop:  # sharpening an upscaled noisy crop invents bars: checksum-valid misreads
            sharp = image.filter(ImageFilter.UnsharpMask(radius=2, percent=150, threshold=2))
            yield _decode(sharp)
            yield _decode_threshold(sharp, 0.5)


def _read_regions(image: Image.Image, boxes, *, scale: float = 1.0, upscale: bool) -> tuple[list[str], str | None]:
    """Every code read from the regions (boxes in `image` / `scale` pixels), and the ISBN of the first decode that
    reads exactly one: a decode that reads two different ISBNs in one region has misread at least one of them."""
    codes: list[str] = []
    for x, y, w, h in boxes:
        margin = 0.5 * max(w, h)  # the blob can hold only the bars' middle
        crop = image.crop((int(max(0, (x - margin) * scale)), int(max(0, (y - margin) * scale)),
                           int(min(image.width, (x + w + margin) * scale)),
                           int(min(image.height, (y + h + margin) * scale))))
        for texts in _region_variants(crop, upscale):
            codes += texts
            isbns = {t for t in texts if is_isbn_ean13(t)}
            if len(isbns) == 1:
                return codes, isbns.pop()
    return codes, None


# (name, attempt, largest long side it is worth running on)
_ATTEMPTS: tuple[tuple[str, Callable[[Image.Image], list[str]], int | None], ...] = (
    ("whole", _decode, None),
    ("threshold-35", lambda im: _decode_threshold(im, 0.35), None),
    ("threshold-50", lambda im: _decode_threshold(im, 0.50), None),
    ("quadrants", _decode_quadrants, None),
    ("sharpened", _decode_sharpened, None),
    ("upscaled-quadrants", _decode_upscaled_quadrants, _UPSCALE_BELOW - 1),
)


def read_isbn_barcode(image: Image.Image, *,
                      full_resolution: Callable[[], Image.Image] | None = None) -> BarcodeResult:
    """The ISBN from the first attempt that decodes a Bookland EAN-13 in an oriented photo.

    `image` should be grayscale ('L') at full or half resolution of the photo (long side ~2000-4000 px): at a
    quarter, barcodes narrower than ~700 px in the original are lost. Other modes are converted. When `image` is a
    reduced decode, `full_resolution` returns the full one (oriented, 'L'): it is called only when a bar-like region
    was found and could not be read from `image`.
    """
    gray = image if image.mode == "L" else image.convert("L")
    result = BarcodeResult(isbn13=None)
    for name, attempt, max_side in _ATTEMPTS:
        if max_side is not None and max(gray.size) > max_side:
            continue
        if name not in _CHEAP and result.regions is None:
            if _try_regions(gray, result, full_resolution):
                break
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


def _try_regions(gray: Image.Image, result: BarcodeResult, full_resolution) -> bool:
    """The regions step of read_isbn_barcode: True once it found the ISBN (recorded in `result`)."""
    start = time.perf_counter()
    boxes = barcode_regions(gray)
    result.regions = len(boxes)
    steps = [("regions", lambda: _read_regions(gray, boxes, upscale=max(gray.size) < _UPSCALE_BELOW))]
    if boxes and full_resolution is not None:
        def full() -> tuple[list[str], str | None]:
            original = full_resolution()
            return _read_regions(original, boxes, scale=original.width / gray.width, upscale=False)

        steps.append(("regions-full-resolution", full))
    for name, step in steps:
        texts, isbn = step() if boxes else ([], None)
        for text in texts:
            if text not in result.codes:
                result.codes.append(text)
        result.attempts.append({"name": name, "ms": round((time.perf_counter() - start) * 1000, 1),
                                "found": isbn is not None})
        start = time.perf_counter()
        if isbn is not None:
            result.isbn13 = isbn
            return True
    return False
