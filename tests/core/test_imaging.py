"""Tests for covr_core.media.imaging: the upload gate, the reduced-decode pHash and the EXIF-free derivatives."""

from __future__ import annotations

import io
import struct
import subprocess
import sys

import imagehash
import numpy as np
import pillow_heif
import pytest
from PIL import Image, ImageChops, ImageDraw, ImageOps

from covr_core.media.imaging import (
    ACCEPTED_FORMATS,
    ImageLimits,
    ImageRejected,
    derivatives,
    full_resolution_loader,
    hamming,
    inspect_image,
    load_for_recognition,
    normalized_jpeg,
    phash_from_hex,
    phash_of,
    phash_to_hex,
    sha256_hex,
    sniff_format,
    thumbnail_jpeg,
)
from covr_core.media.imaging import _scale_for
from tests.photos import png_header_only

ORIENTATION = 0x0112
GPS_IFD = 0x8825


def photo(seed: int, width: int, height: int) -> Image.Image:
    """A photo-like RGB image: smooth gradients, blotchy texture, sensor-like noise and sharp text.

    Built at 1/8 size and upscaled so a 12 MP image costs a fraction of a second.
    """
    rng = np.random.default_rng(seed)
    sw, sh = max(1, width // 8), max(1, height // 8)
    x = np.linspace(0, np.pi, sw, dtype=np.float32)
    y = np.linspace(0, np.pi, sh, dtype=np.float32)
    freq, phase, vfreq = rng.uniform(0.5, 4, (3, 3))
    base = 128 + 60 * np.sin(x[None, :, None] * freq + phase) * np.cos(y[:, None, None] * vfreq)
    base += rng.normal(0, 25, (sh, sw, 3)).astype(np.float32)
    image = Image.fromarray(np.clip(base, 0, 255).astype(np.uint8))
    image = image.resize((width, height), Image.Resampling.BICUBIC)
    tile = rng.integers(0, 24, (256, 256, 3), dtype=np.uint8)
    noise = np.tile(tile, (height // 256 + 1, width // 256 + 1, 1))[:height, :width]
    image = ImageChops.add(image, Image.fromarray(noise), offset=-12)
    draw = ImageDraw.Draw(image)
    font_size = max(8, height // 25)
    for i in range(30):
        x0, y0 = int(rng.integers(0, width * 3 // 4)), int(rng.integers(0, height * 9 // 10))
        colour = tuple(int(v) for v in rng.integers(0, 256, 3))
        draw.text((x0, y0), f"COVR BOOK {i}", fill=colour, font_size=int(font_size * rng.uniform(0.5, 2)))
    return image


def encode(image: Image.Image, fmt: str = "JPEG", **params) -> bytes:
    out = io.BytesIO()
    image.save(out, format=fmt, **params)
    return out.getvalue()


def full_decode_phash(data: bytes) -> int:
    """The reference: imagehash on a full-resolution, EXIF-oriented decode."""
    return phash_from_hex(str(imagehash.phash(ImageOps.exif_transpose(Image.open(io.BytesIO(data))))))


@pytest.fixture(scope="module")
def medium_photo() -> Image.Image:
    return photo(7, 2400, 1800)


ENCODINGS = {"JPEG": {"quality": 85}, "PNG": {"compress_level": 1}, "WEBP": {"quality": 80, "method": 0}}


@pytest.fixture(scope="module")
def encoded_small_photo() -> dict[str, bytes]:
    """One 1200x900 photo in each lossless-or-not format; PNG and WebP decode in full, so keep them small."""
    image = photo(8, 1200, 900)
    return {fmt: encode(image, fmt, **params) for fmt, params in ENCODINGS.items()}


def reason_of(data: bytes, limits: ImageLimits = ImageLimits()) -> str:
    with pytest.raises(ImageRejected) as caught:
        inspect_image(data, limits)
    return caught.value.reason


# --- sniffing and hash helpers ---------------------------------------------------------------------------


def ftyp(major: bytes, *compatible: bytes) -> bytes:
    body = major + b"\x00\x00\x00\x00" + b"".join(compatible)
    return struct.pack(">I", 8 + len(body)) + b"ftyp" + body + b"\x00" * 32


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"\xff\xd8\xff\xe0" + b"\x00" * 20, "jpeg"),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 20, "png"),
        (b"RIFF\x00\x00\x00\x00WEBPVP8 ", "webp"),
        (ftyp(b"heic", b"mif1", b"heic"), "heif"),
        (ftyp(b"mif1", b"heic"), "heif"),
        (ftyp(b"msf1", b"hevc"), "heif"),
        (ftyp(b"avif", b"mif1", b"miaf"), None),
        (ftyp(b"mif1", b"avif"), None),
        (ftyp(b"isom", b"mp41"), None),
        (b"GIF89a" + b"\x00" * 20, None),
        (b"BM" + b"\x00" * 20, None),
        (b"hello", None),
        (b"", None),
    ],
)
def test_sniff_format_reads_magic_bytes(data: bytes, expected: str | None) -> None:
    assert sniff_format(data) == expected


def test_accepted_formats_are_the_four_phone_formats() -> None:
    assert ACCEPTED_FORMATS == ("jpeg", "png", "webp", "heif")


def test_phash_of_is_bit_identical_to_imagehash() -> None:
    for seed in range(4):
        image = photo(seed, 320, 240)
        ours = phash_of(image)
        theirs = imagehash.phash(image)
        assert phash_to_hex(ours) == str(theirs)
        assert -(2**63) <= ours < 2**63


def test_phash_hex_round_trips_and_hamming_counts_bits() -> None:
    for text in ("0000000000000000", "ffffffffffffffff", "8000000000000001", "f11e71350eb4966c"):
        assert phash_to_hex(phash_from_hex(text)) == text
    assert phash_from_hex("ffffffffffffffff") == -1
    assert phash_from_hex("8000000000000000") == -(2**63)
    assert hamming(phash_from_hex("f11e71350eb4966c"), phash_from_hex("f11e71350eb4167c")) == 2
    assert hamming(-1, 0) == 64
    assert hamming(5, 5) == 0
    with pytest.raises(ValueError, match="16 hex digits"):
        phash_from_hex("abc")


@pytest.mark.parametrize(
    ("side", "at_least", "scale"),
    [
        (3000, 256, 8), (1800, 256, 4), (1200, 256, 4), (1000, 256, 2), (480, 256, 1),
        (4000, 2000, 2), (4032, 2000, 2), (3999, 2000, 2), (3998, 2000, 1), (1600, 2000, 1), (16000, 2000, 8),
    ],
)
def test_scale_for_keeps_the_side_at_least_the_target(side: int, at_least: int, scale: int) -> None:
    assert _scale_for(side, at_least) == scale


# --- accepted uploads ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("fmt", "expected"), [("JPEG", "jpeg"), ("PNG", "png"), ("WEBP", "webp")])
def test_inspect_accepts_each_format(encoded_small_photo: dict[str, bytes], fmt: str, expected: str) -> None:
    data = encoded_small_photo[fmt]

    inspected = inspect_image(data)

    assert inspected.format == expected
    assert (inspected.width, inspected.height) == (1200, 900)
    assert inspected.byte_size == len(data)
    assert inspected.sha256 == sha256_hex(data)
    assert inspected.preview.mode == "RGB"
    assert 256 <= min(inspected.preview.size) < 512  # reduced, but not below the pHash floor
    assert hamming(inspected.phash, full_decode_phash(data)) <= 2


def test_small_image_preview_is_not_reduced_below_its_size() -> None:
    inspected = inspect_image(encode(photo(3, 300, 200), quality=90))
    assert inspected.preview.size == (300, 200)


def test_heic_is_accepted() -> None:
    if not pillow_heif.libheif_info().get("HEIF"):
        pytest.skip("this pillow_heif wheel has no HEVC encoder, so no HEIC fixture can be made")
    source = photo(11, 640, 480)
    out = io.BytesIO()
    # ultrafast: x265's default preset takes seconds even at this size.
    pillow_heif.from_pillow(source).save(out, quality=80, enc_params={"preset": "ultrafast"})
    data = out.getvalue()

    inspected = inspect_image(data)

    assert inspected.format == "heif"
    assert (inspected.width, inspected.height) == (640, 480)
    assert hamming(inspected.phash, phash_of(source)) <= 4  # lossy re-encode, same picture

    # pillow_heif turns EXIF orientation into the container's rotation and applies it on decode.
    exif = Image.Exif()
    exif[ORIENTATION] = 6
    out = io.BytesIO()
    source.save(out, format="HEIF", quality=80, exif=exif.tobytes(), enc_params={"preset": "ultrafast"})
    rotated = inspect_image(out.getvalue())
    assert (rotated.width, rotated.height) == (480, 640)
    upright = source.transpose(Image.Transpose.ROTATE_270)
    assert hamming(rotated.phash, phash_of(upright)) <= 4


def test_exif_rotated_jpeg_reports_portrait_size_and_rotated_phash(medium_photo: Image.Image) -> None:
    exif = Image.Exif()
    exif[ORIENTATION] = 6  # stored landscape; viewers rotate 90 degrees clockwise
    rotated_data = encode(medium_photo, quality=85, exif=exif.tobytes())
    upright_data = encode(medium_photo.transpose(Image.Transpose.ROTATE_270), quality=85)

    inspected = inspect_image(rotated_data)

    assert (inspected.width, inspected.height) == (1800, 2400)
    assert inspected.preview.width < inspected.preview.height
    assert hamming(inspected.phash, full_decode_phash(upright_data)) <= 2


def test_rejection_message_names_the_image() -> None:
    data = b"GIF89a" + b"\x00" * 40
    with pytest.raises(ImageRejected) as caught:
        inspect_image(data)
    assert caught.value.sha256 == sha256_hex(data)
    assert str(caught.value).startswith(f"image {sha256_hex(data)[:12]}… rejected: not an accepted image format")


# --- rejections ------------------------------------------------------------------------------------------


def test_rejects_empty_file() -> None:
    assert reason_of(b"") == "file is empty (0 bytes)"


def test_rejects_oversized_file_before_looking_at_it(medium_photo: Image.Image) -> None:
    data = encode(medium_photo, quality=85)
    limits = ImageLimits(max_bytes=len(data) - 1)

    assert "over the" in reason_of(data, limits)
    # The size check comes first: junk that is too big is rejected for its size, not its format.
    assert reason_of(b"x" * 2048, ImageLimits(max_bytes=1024)) == "file is 2 KB, over the 1 KB limit"
    assert reason_of(b"x" * (41 * 1024 * 1024 + 200 * 1024)) == "file is 41.2 MB, over the 40 MB limit"


def test_rejects_text_named_jpg(tmp_path) -> None:
    path = tmp_path / "cover.jpg"
    path.write_text("<html><body>not a photo</body></html>\n")
    reason = reason_of(path.read_bytes())
    assert reason == (
        "not an accepted image format (sniffed: text); accepted: JPEG, PNG, WebP, HEIC/HEIF"
    )


@pytest.mark.parametrize(("fmt", "label"), [("GIF", "GIF"), ("BMP", "BMP"), ("TIFF", "TIFF")])
def test_rejects_formats_phones_do_not_upload(fmt: str, label: str) -> None:
    reason = reason_of(encode(photo(1, 64, 48), fmt))
    assert reason.startswith(f"not an accepted image format (sniffed: {label}); accepted:")


def test_rejects_random_bytes_behind_a_jpeg_magic() -> None:
    data = b"\xff\xd8\xff\xe0" + np.random.default_rng(0).bytes(4096)
    assert reason_of(data).startswith(("corrupt JPEG", "truncated JPEG"))


@pytest.mark.parametrize(("fmt", "label"), [("JPEG", "JPEG"), ("PNG", "PNG"), ("WEBP", "WebP")])
def test_rejects_truncated_files(encoded_small_photo: dict[str, bytes], fmt: str, label: str) -> None:
    data = encoded_small_photo[fmt]
    truncated = data[: len(data) * 2 // 3]

    if fmt != "WEBP":  # libwebp parses the whole RIFF at open; the others need the full decode to notice
        Image.open(io.BytesIO(truncated))

    assert reason_of(truncated).startswith(f"truncated {label}: ")


@pytest.mark.parametrize(
    ("width", "height"),
    [
        (60000, 60000),  # beyond twice Pillow's MAX_IMAGE_PIXELS: Image.open raises DecompressionBombError
        (10000, 10000),  # between Pillow's limits: its DecompressionBombWarning is escalated to an error
        (8000, 7000),  # under Pillow's limits, over ours
    ],
)
def test_rejects_declared_decompression_bomb_without_decoding(width: int, height: int) -> None:
    # The file has a few bytes of pixel data, so a decode would fail as truncated: naming the declared
    # size shows the header check ran first.
    reason = reason_of(png_header_only(width, height))
    assert reason == f"declared {width}x{height} pixels exceeds the 50 MP limit"


def test_pixel_limit_is_configurable() -> None:
    reason = reason_of(encode(photo(2, 400, 300)), ImageLimits(max_pixels=100_000))
    assert reason == "declared 400x300 pixels exceeds the 0.1 MP limit"


# --- recognition decode and derivatives ------------------------------------------------------------------


def test_load_for_recognition_drafts_jpeg_but_keeps_the_long_side(medium_photo: Image.Image) -> None:
    exif = Image.Exif()
    exif[ORIENTATION] = 6
    data = encode(medium_photo, quality=85, exif=exif.tobytes())

    image = load_for_recognition(data, min_long_side=1000)

    assert image.mode == "L"
    assert image.size == (900, 1200)  # 1/2 scale, oriented; 1/4 would leave 600 px
    assert load_for_recognition(data, min_long_side=2400).size == (1800, 2400)


def test_full_resolution_loader_decodes_the_whole_photo_only_when_asked(medium_photo: Image.Image) -> None:
    exif = Image.Exif()
    exif[ORIENTATION] = 6
    data = encode(medium_photo, quality=85, exif=exif.tobytes())
    reduced = load_for_recognition(data, min_long_side=1000)

    full = full_resolution_loader(data, reduced)

    assert full is not None
    assert (full().size, full().mode) == ((1800, 2400), "L")  # oriented like the reduced decode
    assert full_resolution_loader(data, load_for_recognition(data, min_long_side=2400)) is None


def test_load_for_recognition_decodes_other_formats_in_full(encoded_small_photo: dict[str, bytes]) -> None:
    image = load_for_recognition(encoded_small_photo["PNG"], min_long_side=400, mode="RGB")
    assert (image.size, image.mode) == ((1200, 900), "RGB")


def test_load_for_recognition_rejects_what_inspect_rejects() -> None:
    with pytest.raises(ImageRejected, match="declared 60000x60000"):
        load_for_recognition(png_header_only(60000, 60000))


@pytest.fixture(scope="module")
def gps_rotated_jpeg(medium_photo: Image.Image) -> bytes:
    """A landscape pixel buffer shown portrait (Orientation 6) with GPS EXIF; red marks the stored top-left."""
    marked = medium_photo.copy()
    ImageDraw.Draw(marked).rectangle((0, 0, 300, 300), fill=(255, 0, 0))
    exif = Image.Exif()
    exif[ORIENTATION] = 6
    exif.get_ifd(GPS_IFD).update({1: "N", 2: (52.0, 22.0, 12.5), 3: "E", 4: (4.0, 53.0, 30.0)})
    data = encode(marked, quality=90, exif=exif.tobytes())
    assert Image.open(io.BytesIO(data)).getexif().get_ifd(GPS_IFD)  # the fixture really carries GPS
    return data


def assert_served_copy(jpeg: bytes, size: tuple[int, int]) -> None:
    """A JPEG of ``size`` with no EXIF/XMP, oriented so the stored top-left red mark sits top-right."""
    image = Image.open(io.BytesIO(jpeg))
    assert (image.format, image.size) == ("JPEG", size)
    assert not image.getexif()
    assert "exif" not in image.info and "xmp" not in image.info
    rgb = image.convert("RGB")
    red, green, blue = rgb.getpixel((image.width - 3, 3))
    assert red > 200 and green < 60 and blue < 60
    red, green, blue = rgb.getpixel((2, 2))
    assert not (red > 200 and green < 60 and blue < 60)


def test_derivatives_strip_gps_and_apply_orientation(gps_rotated_jpeg: bytes) -> None:
    result = derivatives(gps_rotated_jpeg)

    assert_served_copy(result.normalized_jpeg, (1536, 2048))
    assert_served_copy(result.thumbnail_jpeg, (240, 320))


def test_derivatives_from_decoded_images_strip_gps(gps_rotated_jpeg: bytes) -> None:
    # The pipelines reuse decodes they already have rather than decoding a third time.
    assert_served_copy(normalized_jpeg(load_for_recognition(gps_rotated_jpeg, mode="RGB")), (1536, 2048))
    assert_served_copy(thumbnail_jpeg(inspect_image(gps_rotated_jpeg).preview), (240, 320))
    # A raw Image.open still carries the orientation tag; it is applied before the EXIF is dropped.
    assert_served_copy(thumbnail_jpeg(Image.open(io.BytesIO(gps_rotated_jpeg))), (240, 320))


def test_derivatives_do_not_upscale_small_images() -> None:
    result = derivatives(encode(photo(4, 300, 200), "PNG"))
    assert Image.open(io.BytesIO(result.normalized_jpeg)).size == (300, 200)
    assert Image.open(io.BytesIO(result.thumbnail_jpeg)).size == (300, 200)


def test_module_stays_out_of_dagster_and_fastapi() -> None:
    probe = "import sys, covr_core.media.imaging; print(sorted({'dagster', 'fastapi'} & sys.modules.keys()))"
    output = subprocess.run([sys.executable, "-c", probe], check=True, capture_output=True, text=True).stdout
    assert output.strip() == "[]"


# --- 12 MP phone photos ----------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("seed", [101, 103, 110])
def test_reduced_phash_matches_full_decode_on_12mp_photos(seed: int) -> None:
    data = encode(photo(seed, 4000, 3000), quality=85)

    inspected = inspect_image(data)

    assert (inspected.width, inspected.height) == (4000, 3000)
    assert inspected.preview.size == (500, 375)  # decoded at 1/8 scale
    assert hamming(inspected.phash, full_decode_phash(data)) <= 2
    assert load_for_recognition(data).size == (2000, 1500)  # 1/2 scale, never 1/4
