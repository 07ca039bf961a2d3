"""ISBNs from EAN-13 barcodes in generated phone photos, decoded by the real zxing-cpp."""

from __future__ import annotations

import random
from io import BytesIO

import pytest
from PIL import Image, ImageOps

from covr_core.identification.barcode import (
    GATE_MIN_SHARE,
    BarcodeResult,
    _read_regions,
    barcode_regions,
    is_isbn_ean13,
    read_isbn_barcode,
)
from covr_core.media.imaging import full_resolution_loader, load_for_recognition
from covr_pipelines.hard_photos import FRONT_CONDITIONS, hard_photo
from covr_pipelines.sample_photos import (
    cover_bars_with_sticker,
    draw_ean13,
    exif_rotated_jpeg,
    heic_bytes,
    jpeg_bytes,
    photograph,
    render_cover,
    valid_isbn13,
)

# Half a 12 MP frame: the resolution the pipeline decodes at, and 4x cheaper to generate than full.
HALF_12MP = (2000, 1500)


def _decoded(data: bytes) -> Image.Image:
    """What the pipeline hands the reader: EXIF orientation applied, grayscale."""
    return ImageOps.exif_transpose(Image.open(BytesIO(data))).convert("L")


def _photo(seed: int, isbn: str | None, *, size=HALF_12MP, **kwargs) -> Image.Image:
    cover = render_cover(f"A Field Guide to Volume {seed}", "Jo Marsh", isbn, seed=seed, style=seed % 4)
    return photograph(cover, size=size, seed=seed, **kwargs)


def test_reads_isbn_from_a_photographed_cover():
    isbn = valid_isbn13(1)
    result = read_isbn_barcode(_decoded(jpeg_bytes(_photo(1, isbn, angle=4.0, blur=1.2, noise=6.0))))

    assert result.isbn13 == isbn
    assert isbn in result.codes
    assert result.attempts[-1]["found"] is True
    assert all(set(a) == {"name", "ms", "found"} for a in result.attempts)


def test_stops_at_the_first_attempt_that_finds_an_isbn():
    isbn = valid_isbn13(2)
    # A crisp, straight photo: the plain whole-image decode is enough.
    result = read_isbn_barcode(_decoded(jpeg_bytes(_photo(2, isbn, angle=0.0, blur=0.5, noise=2.0), quality=95)))

    assert result.isbn13 == isbn
    assert [a["name"] for a in result.attempts] == ["whole"]


def test_photo_without_barcode_stops_after_the_cheap_attempts():
    """No barcode-like region: the dear attempts (quadrants, sharpening, upscaling) are not run."""
    result = read_isbn_barcode(_decoded(jpeg_bytes(_photo(3, None))))

    assert result == BarcodeResult(isbn13=None, codes=[], attempts=result.attempts, gate_share=result.gate_share,
                                   regions=0)
    assert [a["name"] for a in result.attempts] == ["whole", "threshold-35", "regions", "gate"]
    assert result.gate_share < GATE_MIN_SHARE
    assert not any(a["found"] for a in result.attempts)


def test_price_barcode_is_recorded_but_not_taken_for_an_isbn():
    price_code = "5012345678900"  # a retail EAN-13 with a valid checksum, not Bookland
    assert not is_isbn_ean13(price_code)
    cover = render_cover("Bargain Bin", "Anon", None, seed=4)
    sticker = draw_ean13(price_code, module=3).convert("RGB")
    cover.paste(sticker, (cover.width - sticker.width - 60, cover.height - sticker.height - 60))

    result = read_isbn_barcode(_decoded(jpeg_bytes(photograph(cover, size=HALF_12MP, seed=4))))

    assert result.isbn13 is None
    assert price_code in result.codes


def test_isbn_wins_over_a_price_barcode_on_the_same_cover():
    isbn = valid_isbn13(5)
    cover = render_cover("Two Codes", "Anon", isbn, seed=5, style=1)  # style 1 puts the ISBN bottom-left
    sticker = draw_ean13("5012345678900", module=3).convert("RGB")
    cover.paste(sticker, (cover.width - sticker.width - 40, cover.height - sticker.height - 40))

    result = read_isbn_barcode(_decoded(jpeg_bytes(photograph(cover, size=HALF_12MP, seed=5))))

    assert result.isbn13 == isbn


def test_barcode_covered_by_a_sticker_is_not_read():
    isbn = valid_isbn13(6)
    cover = cover_bars_with_sticker(render_cover("Covered Up", "Anon", isbn, seed=6, style=2))

    assert read_isbn_barcode(_decoded(jpeg_bytes(photograph(cover, size=HALF_12MP, seed=6)))).isbn13 is None


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_exif_rotated_jpeg_decodes_upright_and_reads(orientation):
    isbn = valid_isbn13(10 + orientation)
    photo = _photo(10 + orientation, isbn)

    gray = _decoded(exif_rotated_jpeg(photo, orientation=orientation))

    assert gray.mode == "L"
    assert gray.size == photo.size
    assert read_isbn_barcode(gray).isbn13 == isbn


@pytest.mark.parametrize("turn", [Image.Transpose.ROTATE_90, Image.Transpose.ROTATE_180, Image.Transpose.ROTATE_270])
def test_book_lying_sideways_or_upside_down_in_an_upright_photo(turn):
    isbn = valid_isbn13(20)
    photo = _photo(20, isbn).transpose(turn)

    assert read_isbn_barcode(_decoded(jpeg_bytes(photo))).isbn13 == isbn


def test_rgb_input_is_read_like_grayscale():
    isbn = valid_isbn13(21)
    rgb = Image.open(BytesIO(jpeg_bytes(_photo(21, isbn)))).convert("RGB")

    assert read_isbn_barcode(rgb).isbn13 == isbn


def test_heic_photo():
    isbn = valid_isbn13(22)
    import pillow_heif

    pillow_heif.register_heif_opener()
    # Small and noiseless because x265 encoding time grows with pixels and noise.
    gray = _decoded(heic_bytes(_photo(22, isbn, size=(1600, 1200), noise=0.0, fill=0.9)))

    assert read_isbn_barcode(gray).isbn13 == isbn


def test_hit_rate_on_varied_photos():
    """Tilt, blur, noise, dim rooms, sideways books and JPEG quality all vary; the reader must still get >= 95%."""
    photos = 20
    hits = 0
    first_hits: dict[str, int] = {}
    for seed in range(100, 100 + photos):
        rng = random.Random(seed)
        isbn = valid_isbn13(seed)
        photo = _photo(
            seed,
            isbn,
            angle=rng.uniform(-8, 8),
            blur=rng.uniform(0.5, 2.0),
            noise=rng.uniform(3, 10),
            background=(rng.randint(60, 200), rng.randint(50, 160), rng.randint(40, 120)),
        )
        if seed % 5 == 2:
            photo = photo.point(lambda v: v * 55 // 100)  # a dim room
        if seed % 7 == 3:
            photo = photo.transpose(Image.Transpose.ROTATE_90)
        result = read_isbn_barcode(_decoded(jpeg_bytes(photo, quality=rng.randint(70, 92))))
        if result.isbn13 == isbn:
            hits += 1
            first_hits[result.attempts[-1]["name"]] = first_hits.get(result.attempts[-1]["name"], 0) + 1
        else:
            assert result.isbn13 is None, f"photo {seed}: read {result.isbn13}, expected {isbn}"

    print(f"barcode hit rate {hits}/{photos}; found by attempt: {first_hits}")
    assert hits / photos >= 0.95


@pytest.mark.slow
@pytest.mark.parametrize("seed", [200, 201, 202])
def test_12mp_photo_at_full_and_half_resolution(seed):
    rng = random.Random(seed)
    isbn = valid_isbn13(seed)
    photo = _photo(seed, isbn, size=(4000, 3000), angle=rng.uniform(-6, 6), blur=rng.uniform(0.8, 1.8))

    full = _decoded(exif_rotated_jpeg(photo, orientation=6))
    half = full.reduce(2)

    assert full.size == (4000, 3000)
    assert read_isbn_barcode(full).isbn13 == isbn
    assert read_isbn_barcode(half).isbn13 == isbn


@pytest.mark.slow
@pytest.mark.parametrize(("condition", "seed", "read_by"), [
    ("back_small_barcode", 602, "regions"),  # ~2 px per module in the 12 MP frame: ~1 px in the half decode
    ("back_small_barcode", 604, "regions-full-resolution"),
    ("back_low_light", 602, "regions-full-resolution"),  # dim and noisy: bars upright, averaged along their length
])
def test_small_barcode_in_a_12mp_photo_is_read_from_its_region(condition, seed, read_by):
    """The whole-image decodes miss it and the gate's 640 px view cannot see it; its bar-like region is read
    closely, from the full-resolution decode when the half one is not enough."""
    photo = hard_photo(condition, seed, size=(4000, 3000))
    half = load_for_recognition(photo.jpeg, mode="L")
    loads = []

    def full_resolution():
        loads.append(1)
        return full_resolution_loader(photo.jpeg, half)()

    result = read_isbn_barcode(half, full_resolution=full_resolution)

    assert half.size == (2000, 1500)
    assert result.isbn13 == photo.isbn13
    assert result.attempts[-1]["name"] == read_by
    assert result.regions >= 1
    assert len(loads) == (read_by == "regions-full-resolution")
    if read_by == "regions-full-resolution":
        assert read_isbn_barcode(half).isbn13 is None  # without the full decode it stays unread


def test_front_covers_rarely_have_a_bar_like_region():
    """Titles, blurbs, shapes and desk clutter are not bars, so front covers almost never pay for a close look or a
    full-resolution decode (measured: 1 of 120 photos, a title line of tall capitals)."""
    photos = [hard_photo(condition, seed) for seed in range(9000, 9004) for condition in FRONT_CONDITIONS]
    with_region = [p.name for p in photos if barcode_regions(load_for_recognition(p.jpeg, mode="L"))]

    assert len(with_region) <= len(photos) // 30, with_region


def test_a_region_that_reads_two_different_isbns_gives_none():
    """Two ISBNs from one close look at one region: at least one is a misread, so neither is taken."""
    first, second = draw_ean13(valid_isbn13(31), module=3), draw_ean13(valid_isbn13(32), module=3)
    both = Image.new("L", (first.width + second.width + 40, max(first.height, second.height)), 255)
    both.paste(first.convert("L"), (0, 0))
    both.paste(second.convert("L"), (first.width + 40, 0))

    codes, isbn = _read_regions(both, [(0, 0, both.width, both.height)], upscale=False)

    assert {valid_isbn13(31), valid_isbn13(32)} <= set(codes)
    assert isbn is None
