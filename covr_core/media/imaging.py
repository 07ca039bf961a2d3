"""Validate, hash and downscale uploaded phone photos before anything else in Covr trusts them.

Every upload is untrusted bytes. ``inspect_image`` is the gate: it checks the size, sniffs the format from
magic bytes, refuses decompression bombs from the declared header size, decodes the whole file (opening alone
does not catch truncation) and returns the facts the catalog stores: format, oriented dimensions, SHA-256 and a
64-bit perceptual hash. ``load_for_recognition`` and ``derivatives`` decode again at the scale their consumers
need. Everything here is pure: no Dagster, no FastAPI, no I/O beyond the bytes handed in.
"""

from __future__ import annotations

import hashlib
import io
import struct
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pillow_heif
import scipy.fft
from PIL import Image, ImageFile, ImageOps

# Once, at import: HEIC is what iPhones upload by default.
pillow_heif.register_heif_opener()

ACCEPTED_FORMATS = ("jpeg", "png", "webp", "heif")

_PIL_FORMAT = {"jpeg": "JPEG", "png": "PNG", "webp": "WEBP", "heif": "HEIF"}
_LABEL = {"jpeg": "JPEG", "png": "PNG", "webp": "WebP", "heif": "HEIC/HEIF"}
_ACCEPTED_LABELS = ", ".join(_LABEL[f] for f in ACCEPTED_FORMATS)

# ISO BMFF brands. HEVC-coded HEIF is accepted; AVIF shares the container but is AV1, which the pillow_heif
# wheel cannot decode, so a file whose brands say AV1 and never HEVC is not ours.
_HEVC_BRANDS = frozenset({b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx"})
_GENERIC_HEIF_BRANDS = frozenset({b"mif1", b"msf1"})
_AV1_BRANDS = frozenset({b"avif", b"avis"})

# Pillow and pillow_heif raise all of these for malformed input, depending on the plugin and where it breaks.
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, IndexError, struct.error, RuntimeError)

_ORIENTATION_TAG = 0x0112
_ORIENTATIONS_SWAPPING_AXES = frozenset({5, 6, 7, 8})

# The pHash preview keeps at least this many pixels on its short side. pHash only looks at a 32x32 resample,
# so more is wasted decode time; much less and the reduced hash starts to drift from the full-decode hash.
PREVIEW_MIN_SIDE = 256
# Below this a photo cannot show a readable cover, and recognisers (zxing) refuse such images outright.
MIN_SIDE = 32
# 2048 keeps a 12 MP photo's half-scale decode (2000 px) as it is: the derivative costs an encode, no resize.
NORMALIZED_LONG_SIDE = 2048
THUMBNAIL_LONG_SIDE = 320
_DERIVATIVE_QUALITY = 85

_MB = 1024 * 1024
_PHASH_MASK = (1 << 64) - 1


@dataclass(frozen=True)
class ImageLimits:
    """What an upload may cost us: bytes on the wire and pixels once decoded."""

    max_bytes: int = 40 * _MB
    max_pixels: int = 50_000_000


class ImageRejected(Exception):
    """An upload Covr will not store; ``reason`` is one sentence naming the problem."""

    def __init__(self, reason: str, *, sha256: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.sha256 = sha256

    def __str__(self) -> str:
        subject = f"image {self.sha256[:12]}…" if self.sha256 else "image"
        return f"{subject} rejected: {self.reason}"


@dataclass(frozen=True)
class InspectedImage:
    """The facts ``inspect_image`` establishes about an accepted upload."""

    format: str  # one of ACCEPTED_FORMATS
    width: int  # full-resolution width after EXIF orientation
    height: int  # full-resolution height after EXIF orientation
    byte_size: int
    sha256: str  # lowercase hex
    phash: int  # signed 64-bit, so it fits a Postgres bigint; see phash_to_hex
    preview: Image.Image  # oriented RGB, short side >= PREVIEW_MIN_SIDE where the original allows


@dataclass(frozen=True)
class Derivatives:
    """Re-encoded JPEG copies safe to serve: orientation baked into the pixels, and no EXIF (so no GPS)."""

    normalized_jpeg: bytes  # long side <= NORMALIZED_LONG_SIDE
    thumbnail_jpeg: bytes  # long side <= THUMBNAIL_LONG_SIDE


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sniff_format(data: bytes) -> str | None:
    """The accepted format the magic bytes announce, or None; the file name and client MIME type are ignored."""
    if data[:3] == b"\xff\xd8\xff":
        return "jpeg"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "png"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    if data[4:8] == b"ftyp" and _is_hevc_heif(data):
        return "heif"
    return None


def _is_hevc_heif(data: bytes) -> bool:
    (box_size,) = struct.unpack(">I", data[:4])
    major = data[8:12]
    # Compatible brands follow the major brand and minor version, up to the end of the ftyp box.
    box_end = min(box_size, len(data), 256)
    brands = {major} | {data[i : i + 4] for i in range(16, box_end - 3, 4)}
    if brands & _HEVC_BRANDS:
        return True
    return major in _GENERIC_HEIF_BRANDS and not brands & _AV1_BRANDS


def _describe_unaccepted(data: bytes) -> str:
    """A short name for what a rejected upload looks like, so the message says more than 'invalid'."""
    signatures = (
        (b"GIF87a", "GIF"),
        (b"GIF89a", "GIF"),
        (b"BM", "BMP"),
        (b"II*\x00", "TIFF"),
        (b"MM\x00*", "TIFF"),
        (b"%PDF", "PDF"),
        (b"PK\x03\x04", "ZIP"),
    )
    for magic, name in signatures:
        if data.startswith(magic):
            return name
    if data[4:8] == b"ftyp":
        return f"ISO media ({data[8:12].decode('ascii', 'replace').strip()})"
    head = data[:512]
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 3:  # a character cut by the 512-byte window is not evidence of binary
            return "unknown"
        text = head[: exc.start].decode("utf-8")
    return "text" if all(c.isprintable() or c in "\r\n\t" for c in text) else "unknown"


def _human_size(n: int) -> str:
    if n >= _MB:
        return f"{n / _MB:.1f}".removesuffix(".0") + " MB"
    if n >= 1024:
        return f"{n / 1024:.1f}".removesuffix(".0") + " KB"
    return f"{n} bytes"


def _check_byte_size(data: bytes, limits: ImageLimits) -> None:
    size = len(data)
    if size == 0:
        raise ImageRejected("file is empty (0 bytes)")
    if size > limits.max_bytes:
        shown, limit = _human_size(size), _human_size(limits.max_bytes)
        if shown == limit:  # 40.02 MB against 40 MB would read as "40 MB, over the 40 MB limit"
            shown, limit = f"{size:,} bytes", f"{limits.max_bytes:,}-byte"
        raise ImageRejected(f"file is {shown}, over the {limit} limit")


def _megapixels(pixels: int) -> str:
    return f"{pixels / 1_000_000:g} MP"


def _too_many_pixels(size: tuple[int, int] | None, max_pixels: int) -> str:
    limit = _megapixels(max_pixels)
    if size is None:
        return f"declared size exceeds the {limit} limit (Pillow's decompression-bomb guard refused the header)"
    return f"declared {size[0]}x{size[1]} pixels exceeds the {limit} limit"


def _declared_size(data: bytes, fmt: str) -> tuple[int, int] | None:
    """Header dimensions read by the format plugin itself, without Image.open's bomb check or any decode.

    Only used to word the message after Image.open refused the file as a bomb, so the user sees the
    dimensions rather than a pixel count.
    """
    factory, _accept = Image.OPEN[_PIL_FORMAT[fmt]]
    try:
        with factory(io.BytesIO(data), "") as header:
            return header.size
    except _DECODE_ERRORS:
        return None


def _decode_failure(fmt: str, exc: BaseException, data: bytes) -> str:
    detail = str(exc) or type(exc).__name__
    # libwebp only says "could not create decoder object"; the RIFF length says whether bytes are missing.
    riff_short = fmt == "webp" and struct.unpack("<I", data[4:8])[0] + 8 > len(data)
    kind = "truncated" if riff_short or "truncated" in detail.lower() else "corrupt"
    return f"{kind} {_LABEL[fmt]}: {detail}"


def _scale_for(side: int, at_least: int) -> int:
    """The largest JPEG DCT scale divisor (8, 4, 2, 1) that still leaves ``side`` at least ``at_least`` px."""
    for scale in (8, 4, 2):
        if -(-side // scale) >= at_least:
            return scale
    return 1


@dataclass(frozen=True)
class _Decoded:
    format: str
    size: tuple[int, int]  # full resolution, oriented
    image: Image.Image  # fully decoded, oriented, in the requested mode; reduced for JPEG


def _decode(
    data: bytes,
    limits: ImageLimits,
    *,
    mode: str,
    at_least: int,
    side: Callable[[int, int], int],
) -> _Decoded:
    """Open, bomb-check, fully decode and orient ``data``.

    A JPEG is decoded in draft mode at the smallest DCT scale whose ``side(width, height)`` stays at least
    ``at_least``: libjpeg still reads the whole entropy-coded stream at reduced scale, so truncation is caught
    at a fraction of the cost. Other formats are decoded at full size.
    """
    if ImageFile.LOAD_TRUNCATED_IMAGES:
        # Some library in the process switched it on; decoding now would pad truncated uploads with grey.
        raise RuntimeError("PIL.ImageFile.LOAD_TRUNCATED_IMAGES is True; covr_core.media.imaging refuses to decode")
    _check_byte_size(data, limits)
    fmt = sniff_format(data)
    if fmt is None:
        raise ImageRejected(
            f"not an accepted image format (sniffed: {_describe_unaccepted(data)}); accepted: {_ACCEPTED_LABELS}"
        )
    try:
        # Pillow only warns between MAX_IMAGE_PIXELS and twice that; a warning must stop the decode too.
        # catch_warnings swaps the process-wide filter list, so threads (the ingestion pool) can briefly see
        # each other's filters. That is harmless: the explicit max_pixels check below rejects everything
        # over the configured limit whether or not the warning was escalated.
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=[_PIL_FORMAT[fmt]])
            width, height = image.size
            if width * height > limits.max_pixels:
                raise ImageRejected(_too_many_pixels((width, height), limits.max_pixels))
            orientation = image.getexif().get(_ORIENTATION_TAG, 1)
            if fmt == "jpeg":
                scale = _scale_for(side(width, height), at_least)
                # Even at full scale, draft(mode) lets libjpeg emit "L" directly instead of converting RGB.
                target = (max(1, width // scale), max(1, height // scale)) if scale > 1 else None
                image.draft(mode, target)
            # open() and verify() both pass a truncated file; only a complete decode proves the data is there.
            image.load()
            ImageOps.exif_transpose(image, in_place=True)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        pillow_limit = Image.MAX_IMAGE_PIXELS or limits.max_pixels
        effective = min(limits.max_pixels, pillow_limit)
        raise ImageRejected(_too_many_pixels(_declared_size(data, fmt), effective)) from None
    except Image.UnidentifiedImageError:
        raise ImageRejected(f"corrupt {_LABEL[fmt]}: the header could not be parsed") from None
    except _DECODE_ERRORS as exc:
        raise ImageRejected(_decode_failure(fmt, exc, data)) from None

    if orientation in _ORIENTATIONS_SWAPPING_AXES:
        width, height = height, width
    # Either way the result is a plain Image: an ImageFile would keep the upload's bytes alive through its fp.
    image = image.convert(mode) if image.mode != mode else image.copy()
    return _Decoded(format=fmt, size=(width, height), image=image)


def inspect_image(data: bytes, limits: ImageLimits = ImageLimits()) -> InspectedImage:
    """Accept or reject an upload, returning its format, oriented size, SHA-256, pHash and a small preview.

    Raises ImageRejected with a reason that names the problem. Checks run cheapest first: byte size, magic
    bytes, declared pixel count, then a complete decode at reduced scale.
    """
    sha = sha256_hex(data) if data and len(data) <= limits.max_bytes else None
    try:
        decoded = _decode(data, limits, mode="RGB", at_least=PREVIEW_MIN_SIDE, side=min)
    except ImageRejected as exc:
        exc.sha256 = sha
        raise
    if min(decoded.size) < MIN_SIDE:
        raise ImageRejected(
            f"image is {decoded.size[0]}x{decoded.size[1]} pixels; a photo of a book needs at least "
            f"{MIN_SIDE} pixels on each side",
            sha256=sha,
        )
    preview = decoded.image
    # The preview outlives this call (embeddings, thumbnails); keep GPS-bearing EXIF and XMP off it.
    preview.info = {k: v for k, v in preview.info.items() if k == "icc_profile"}
    # Non-JPEG formats have no DCT scaling; a box reduce gives the pHash the same kind of input.
    factor = _scale_for(min(preview.size), PREVIEW_MIN_SIDE)
    if factor > 1:
        preview = preview.reduce(factor)
    assert sha is not None  # _decode rejected empty and oversized files
    return InspectedImage(
        format=decoded.format,
        width=decoded.size[0],
        height=decoded.size[1],
        byte_size=len(data),
        sha256=sha,
        phash=phash_of(preview),
        preview=preview,
    )


def load_for_recognition(
    data: bytes,
    *,
    min_long_side: int = 2000,
    mode: str = "L",
    limits: ImageLimits = ImageLimits(),
) -> Image.Image:
    """An oriented decode for barcode reading and OCR, as small as possible while keeping ``min_long_side``.

    A 12 MP JPEG decodes at 1/2 scale (2000 px long side), never 1/4: EAN bars and ISBN digits need the
    pixels. Other formats decode at full size. Raises ImageRejected like ``inspect_image``.
    """
    return _decode(data, limits, mode=mode, at_least=min_long_side, side=max).image


def full_resolution_loader(
    data: bytes, decoded: Image.Image, *, mode: str = "L", limits: ImageLimits = ImageLimits()
) -> Callable[[], Image.Image] | None:
    """For ``decoded``, a reduced decode of ``data`` (load_for_recognition), a function that decodes the full
    resolution when called; None when ``decoded`` is already full size. Reading the header here costs no decode."""
    with Image.open(io.BytesIO(data)) as header:
        full_side = max(header.size)
    if full_side <= max(decoded.size):
        return None
    return lambda: _decode(data, limits, mode=mode, at_least=full_side, side=max).image


def derivatives(data: bytes, *, limits: ImageLimits = ImageLimits()) -> Derivatives:
    """The normalised JPEG and thumbnail Covr serves instead of the original upload, from the upload's bytes.

    Decodes a JPEG at the smallest DCT scale that still covers NORMALIZED_LONG_SIDE. Callers that already hold
    a decoded image (``load_for_recognition``, ``InspectedImage.preview``) use ``normalized_jpeg`` and
    ``thumbnail_jpeg`` directly instead of decoding again.
    """
    decoded = _decode(data, limits, mode="RGB", at_least=NORMALIZED_LONG_SIDE, side=max)
    normalized = _fit(decoded.image, NORMALIZED_LONG_SIDE)
    return Derivatives(normalized_jpeg=_encode_jpeg(normalized), thumbnail_jpeg=thumbnail_jpeg(normalized))


def normalized_jpeg(image: Image.Image) -> bytes:
    """``image`` upright, long side at most NORMALIZED_LONG_SIDE, as a JPEG with no EXIF (so no GPS)."""
    return _encode_jpeg(_fit(_upright(image), NORMALIZED_LONG_SIDE))


def thumbnail_jpeg(image: Image.Image) -> bytes:
    """``image`` upright, long side at most THUMBNAIL_LONG_SIDE, as a JPEG with no EXIF (so no GPS)."""
    return _encode_jpeg(_fit(_upright(image), THUMBNAIL_LONG_SIDE))


def _upright(image: Image.Image) -> Image.Image:
    # Images from this module are already oriented and carry no orientation tag; one straight from
    # Image.open may still need turning, and the tag is about to be dropped with the rest of the EXIF.
    if image.getexif().get(_ORIENTATION_TAG, 1) == 1:
        return image
    return ImageOps.exif_transpose(image)


def _fit(image: Image.Image, long_side: int) -> Image.Image:
    """Shrink to ``long_side`` keeping the aspect ratio; never enlarge."""
    width, height = image.size
    if max(width, height) <= long_side:
        return image
    ratio = long_side / max(width, height)
    size = (max(1, round(width * ratio)), max(1, round(height * ratio)))
    if ratio > 0.5:
        # A mild reduction: bilinear (antialiased in Pillow) costs half of LANCZOS with no visible difference.
        return image.resize(size, Image.Resampling.BILINEAR)
    # reducing_gap box-reduces first, then LANCZOS finishes: near-identical output at a fraction of the cost.
    return image.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)


def _encode_jpeg(image: Image.Image) -> bytes:
    # The ICC profile describes RGB pixels; kept because dropping it shifts wide-gamut (Display P3) phone
    # colours. It carries no personal data.
    icc_profile = image.info.get("icc_profile") if image.mode == "RGB" else None
    if image.mode not in ("RGB", "L"):
        image = image.convert("RGB")
    out = io.BytesIO()
    # exif= and xmp= are deliberately absent. Pillow writes only the metadata handed to save(), so this is
    # what strips GPS; passing the original EXIF along, even minus its orientation tag, would keep it.
    image.save(out, format="JPEG", quality=_DERIVATIVE_QUALITY, optimize=True, icc_profile=icc_profile)
    return out.getvalue()


def phash_of(image: Image.Image) -> int:
    """The 64-bit DCT perceptual hash, bit-for-bit what ``imagehash.phash(image)`` computes, as a signed int64.

    Bit order matches ``str(imagehash.phash(...))``: the first DCT coefficient is the most significant bit.
    """
    pixels = np.asarray(image.convert("L").resize((32, 32), Image.Resampling.LANCZOS), dtype=np.float64)
    dct = scipy.fft.dct(scipy.fft.dct(pixels, axis=0), axis=1)
    low = dct[:8, :8]
    bits = low > np.median(low)
    return int.from_bytes(np.packbits(bits).tobytes(), "big", signed=True)


def phash_to_hex(phash: int) -> str:
    """16 lowercase hex digits, the same text ``str(imagehash.phash(...))`` prints."""
    return f"{phash & _PHASH_MASK:016x}"


def phash_from_hex(text: str) -> int:
    if len(text) != 16:
        raise ValueError(f"pHash hex {text!r} must be 16 hex digits, got {len(text)}")
    return int.from_bytes(bytes.fromhex(text), "big", signed=True)


def hamming(a: int, b: int) -> int:
    """Differing bits between two pHashes; works on the signed form stored in Postgres."""
    return ((a ^ b) & _PHASH_MASK).bit_count()

