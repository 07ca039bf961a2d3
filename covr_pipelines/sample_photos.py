"""Sample photos: synthetic book covers, phone-like photographs of them, and the files of `covr demo`.

The one generator of sample pixels. `covr demo` (write_demo_files) and the benchmarks use it, and so do the tests,
through tests/photos.py; it is in the installed package because `covr demo` runs from an installed copy.
"""

from __future__ import annotations

import functools
import json
import random
import textwrap
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path

import numpy as np
from PIL import Image, ImageChops, ImageDraw, ImageFilter, ImageFont

from covr_core.shared.isbn import isbn13_check_digit

__all__ = [
    "DEMO_CATALOG_BOOKS",
    "DEMO_PASSWORD",
    "DEMO_USERS",
    "SAMPLE_BOOKS",
    "cover_bars_with_sticker",
    "cover_photo_jpeg",
    "draw_ean13",
    "exif_rotated_jpeg",
    "heic_bytes",
    "hyphenate_isbn13",
    "jpeg_bytes",
    "photograph",
    "render_cover",
    "valid_isbn13",
    "write_demo_files",
]

# fonts-dejavu-core (apt) ships exactly these; anything else falls back to Pillow's bundled font.
_FONT_DIRS = ("/usr/share/fonts/truetype/dejavu", "/usr/share/fonts/dejavu", "/usr/local/share/fonts")
_FONT_FILES = {
    "sans": "DejaVuSans.ttf",
    "sans-bold": "DejaVuSans-Bold.ttf",
    "serif": "DejaVuSerif.ttf",
    "serif-bold": "DejaVuSerif-Bold.ttf",
    "mono": "DejaVuSansMono.ttf",
}


@functools.lru_cache(maxsize=256)
def _font(kind: str, size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    for folder in _FONT_DIRS:
        path = Path(folder) / _FONT_FILES[kind]
        if path.exists():
            return ImageFont.truetype(str(path), size)
    return ImageFont.load_default(size=size)


def valid_isbn13(seed: int) -> str:
    """A checksum-valid 978 ISBN-13, deterministic in seed."""
    rng = random.Random(f"isbn-{seed}")
    first12 = "978" + "".join(str(rng.randrange(10)) for _ in range(9))
    return first12 + isbn13_check_digit(first12)


def hyphenate_isbn13(isbn13: str) -> str:
    """978-0-306-40615-7 style grouping; real group boundaries vary by publisher, any split is realistic enough."""
    return f"{isbn13[:3]}-{isbn13[3]}-{isbn13[4:7]}-{isbn13[7:12]}-{isbn13[12]}"


# EAN-13 symbol tables (GS1 General Specifications 5.2.1.2): L/G code the left half, R the right half, and the
# first digit is carried by which left digits use G.
_L = ("0001101", "0011001", "0010011", "0111101", "0100011", "0110001", "0101111", "0111011", "0110111", "0001011")
_G = tuple("".join("1" if b == "0" else "0" for b in code)[::-1] for code in _L)
_R = tuple("".join("1" if b == "0" else "0" for b in code) for code in _L)
_PARITY = ("LLLLLL", "LLGLGG", "LLGGLG", "LLGGGL", "LGLLGG", "LGGLLG", "LGGGLL", "LGLGLG", "LGLGGL", "LGGLGL")


def _ean13_modules(code: str) -> str:
    left = "".join((_L if p == "L" else _G)[int(d)] for p, d in zip(_PARITY[int(code[0])], code[1:7], strict=True))
    right = "".join(_R[int(d)] for d in code[7:])
    return "101" + left + "01010" + right + "101"


def draw_ean13(code: str, *, module: int = 3, height: int | None = None, caption: str | None = None) -> Image.Image:
    """An EAN-13 symbol on white, with quiet zones, guard bars, human-readable digits and an optional caption above."""
    if len(code) != 13 or not code.isdigit() or isbn13_check_digit(code[:12]) != code[12]:
        raise ValueError(f"EAN-13 {code!r} is not 13 digits with a valid check digit")
    modules = _ean13_modules(code)
    bar_h = height or module * 60
    digit_font = _font("mono", module * 8)
    caption_font = _font("sans", module * 8)
    quiet = 11 * module
    top = module * 12 if caption else module * 3
    width = quiet * 2 + len(modules) * module
    img = Image.new("L", (width, top + bar_h + module * 12), 255)
    draw = ImageDraw.Draw(img)
    if caption:
        draw.text((width // 2, module * 2), caption, fill=0, font=caption_font, anchor="mt")
    guards = set(range(3)) | set(range(45, 50)) | set(range(92, 95))
    for i, bit in enumerate(modules):
        if bit == "1":
            x = quiet + i * module
            bottom = top + bar_h + (module * 5 if i in guards else 0)
            draw.rectangle((x, top, x + module - 1, bottom), fill=0)
    text_y = top + bar_h + module
    draw.text((quiet - module * 2, text_y), code[0], fill=0, font=digit_font, anchor="rt")
    draw.text((quiet + 24 * module, text_y), code[1:7], fill=0, font=digit_font, anchor="mt")
    draw.text((quiet + 71 * module, text_y), code[7:], fill=0, font=digit_font, anchor="mt")
    img.info["bars_box"] = (quiet, top, quiet + len(modules) * module, top + bar_h + module * 5)
    return img


def _luminance(rgb: tuple[int, int, int]) -> float:
    return 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]


def _fit_lines(draw: ImageDraw.ImageDraw, text: str, kind: str, size: int, max_w: int, max_lines: int):
    """Largest font (starting at size) at which text wraps into max_lines lines no wider than max_w."""
    while True:
        font = _font(kind, size)
        avg = max(1.0, draw.textlength("abcdefghijklmnopqrstuvwxyz", font=font) / 26)
        lines = textwrap.wrap(text, width=max(1, int(max_w / avg)), break_long_words=False) or [""]
        widest = max(draw.textlength(line, font=font) for line in lines)
        if (len(lines) <= max_lines and widest <= max_w) or size <= 12:
            return font, lines
        size = int(size * 0.9)


def render_cover(
    title: str,
    author: str,
    isbn13: str | None,
    *,
    size: tuple[int, int] = (1000, 1500),
    seed: int = 0,
    style: int = 0,
    barcode: bool = True,
) -> Image.Image:
    """An RGB book cover: coloured background, big title, author, and an EAN-13 with "ISBN ..." caption if isbn13.

    barcode=False prints only the "ISBN ..." line, as on a copyright page or a cover whose barcode is covered.
    """
    rng = random.Random(f"cover-{seed}-{style}")
    w, h = size
    style %= 4
    dark = style == 2 or (style == 3 and rng.random() < 0.5)
    lo, hi = (15, 90) if dark else (150, 250)
    bg = tuple(rng.randint(lo, hi) for _ in range(3))
    ink = (245, 245, 240) if _luminance(bg) < 128 else (rng.randint(0, 40), rng.randint(0, 40), rng.randint(0, 60))

    img = Image.new("RGB", size, bg)
    draw = ImageDraw.Draw(img)
    if style == 1:
        # Vertical gradient: a flat colour is the easiest case for every engine.
        grad = np.linspace(0.0, 1.0, h, dtype=np.float32)[:, None, None]
        end = np.array([min(255, c + 50) for c in bg], np.float32)
        arr = np.broadcast_to(np.array(bg, np.float32) * (1 - grad) + end * grad, (h, w, 3))
        img = Image.fromarray(arr.astype(np.uint8))
        draw = ImageDraw.Draw(img)
    for _ in range(rng.randint(2, 5)):
        # Decorative shapes in the middle band, where real covers put artwork.
        cx, cy, r = rng.randint(0, w), rng.randint(int(h * 0.45), int(h * 0.65)), rng.randint(w // 20, w // 6)
        shade = tuple(max(0, min(255, c + rng.randint(-60, 60))) for c in bg)
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=shade)

    serif = style in (1, 3)
    title_font, title_lines = _fit_lines(draw, title, "serif-bold" if serif else "sans-bold", w // 9, int(w * 0.84), 4)
    author_font = _font("serif" if serif else "sans", w // 20)
    line_h = int(title_font.size * 1.2)
    margin = int(w * 0.08)
    if style == 1:
        draw.text((margin, int(h * 0.06)), author, fill=ink, font=author_font)
        y = int(h * 0.2)
        for line in title_lines:
            draw.text((margin, y), line, fill=ink, font=title_font)
            y += line_h
    else:
        if style == 3:
            band = tuple(max(0, min(255, 255 - c)) for c in bg)
            band_ink = (245, 245, 240) if _luminance(band) < 128 else (20, 20, 30)
            draw.rectangle((0, int(h * 0.05), w, int(h * 0.1) + line_h * len(title_lines)), fill=band)
        y = int(h * 0.08)
        for line in title_lines:
            draw.text((w // 2, y), line, fill=band_ink if style == 3 else ink, font=title_font, anchor="mt")
            y += line_h
        draw.text((w // 2, y + int(h * 0.03)), author, fill=ink, font=author_font, anchor="mt")

    if isbn13:
        # Real EAN-13s are ~37 mm on a ~130 mm wide cover: 3-4 px per module at 1000 px wide.
        module = max(1, round(w / 1000 * rng.choice((3, 3, 4))))
        caption = f"ISBN {hyphenate_isbn13(isbn13)}"
        if barcode:
            code = draw_ean13(isbn13, module=module, caption=caption)
        else:
            font = _font("sans", module * 8)
            code = Image.new(
                "L", (int(ImageDraw.Draw(img).textlength(caption, font=font)) + 4 * module, module * 12), 255
            )
            ImageDraw.Draw(code).text((2 * module, 2 * module), caption, fill=0, font=font)
        pad = module * 4
        box = Image.new("RGB", (code.width + 2 * pad, code.height + 2 * pad), (255, 255, 255))
        box.paste(code.convert("RGB"), (pad, pad))
        bx = {0: w - box.width - margin, 1: margin, 2: (w - box.width) // 2, 3: w - box.width - margin}[style]
        by = h - box.height - int(h * 0.05)
        img.paste(box, (bx, by))
        if barcode:
            x0, y0, x1, y1 = code.info["bars_box"]
            img.info["bars_box"] = (bx + pad + x0, by + pad + y0, bx + pad + x1, by + pad + y1)
    return img


def cover_bars_with_sticker(cover: Image.Image) -> Image.Image:
    """A copy of a render_cover() cover with a price sticker over the middle third of its bars: unreadable, while
    the "ISBN ..." caption above stays visible."""
    x0, y0, x1, y1 = cover.info["bars_box"]
    third = (x1 - x0) // 3
    stickered = cover.copy()
    ImageDraw.Draw(stickered).rectangle((x0 + third, y0 - 2, x1 - third, y1 + 2), fill=(250, 220, 60))
    return stickered


def _table(size: tuple[int, int], rng: np.random.Generator, base: tuple[int, int, int]) -> Image.Image:
    """Wood-grain-ish background, built at 1/8 scale and upsampled so a 12 MP frame costs milliseconds."""
    w, h = size
    sw, sh = max(8, w // 8), max(8, h // 8)
    y = np.linspace(0, 1, sh, dtype=np.float32)[:, None]
    x = np.linspace(0, 1, sw, dtype=np.float32)[None, :]
    phase = rng.uniform(0, 6.28)
    grain = np.sin((y * rng.uniform(20, 60) + np.sin(x * rng.uniform(2, 6) + phase) * 0.8) * 6.28)
    blotch = rng.standard_normal((sh, sw)).astype(np.float32)
    small = np.clip(grain * 12 + blotch * 6, -40, 40)
    rgb = np.clip(np.array(base, np.float32)[None, None, :] + small[:, :, None], 0, 255).astype(np.uint8)
    return Image.fromarray(rgb).resize((w, h), Image.Resampling.BILINEAR)


def photograph(
    cover: Image.Image,
    *,
    size: tuple[int, int] = (4000, 3000),
    angle: float = 3.0,
    seed: int = 0,
    noise: float = 6.0,
    blur: float = 1.0,
    background: tuple[int, int, int] = (150, 110, 75),
    fill: float | None = None,
) -> Image.Image:
    """An RGB phone-like photo: cover rotated by angle degrees on a table, filling 60-80% of the frame height,
    with uneven light, sensor noise (std dev in grey levels) and lens blur.

    blur is a Gaussian sigma in pixels of a 4000x3000 frame and scales with size, so size=(2000, 1500) or
    (1600, 1200) looks like the 12 MP photo downscaled: the fast variant for tests. fill is the share of the frame
    the cover spans (random 0.6-0.8 by default); background is the table's base colour.
    """
    rng = np.random.default_rng(seed)
    w, h = size
    frame = _table(size, rng, background)

    fill = fill if fill is not None else float(rng.uniform(0.6, 0.8))
    scale = fill * min(h / cover.height, w / cover.width)
    cw, ch = max(1, round(cover.width * scale)), max(1, round(cover.height * scale))
    resample = Image.Resampling.BILINEAR if scale >= 1 else Image.Resampling.BOX
    placed = cover.convert("RGB").resize((cw, ch), resample)
    mask = Image.new("L", (cw, ch), 255)
    placed = placed.rotate(angle, resample=Image.Resampling.BILINEAR, expand=True)
    mask = mask.rotate(angle, resample=Image.Resampling.BILINEAR, expand=True)
    free_x, free_y = max(0, w - placed.width), max(0, h - placed.height)
    x = int(free_x / 2 + rng.uniform(-0.2, 0.2) * free_x)
    y = int(free_y / 2 + rng.uniform(-0.2, 0.2) * free_y)
    blur = blur * max(w, h) / 4000
    if blur > 0:
        # Only the cover has detail worth blurring (the table is upsampled and already soft); blurring the mask too
        # softens the cover's edge. A third of the cost of blurring the whole frame.
        placed = placed.filter(ImageFilter.GaussianBlur(blur))
        mask = mask.filter(ImageFilter.GaussianBlur(blur))
    frame.paste(placed, (x, y), mask)

    # Light falls off across the frame (window on one side): a small gradient, upsampled, multiplied in. Pillow's
    # ImageChops work in C on the whole frame; the numpy equivalent at 12 MP cost ~0.3 s more.
    lw, lh = 32, 24
    gx = np.linspace(-1, 1, lw, dtype=np.float32)[None, :] * rng.uniform(-0.15, 0.15)
    gy = np.linspace(-1, 1, lh, dtype=np.float32)[:, None] * rng.uniform(-0.1, 0.1)
    shade = (1.0 + gx + gy) / (1.0 + abs(gx).max() + abs(gy).max())  # brightest corner unchanged
    light = Image.fromarray((shade * 255).astype(np.uint8)).resize(size, Image.Resampling.BILINEAR)
    frame = ImageChops.multiply(frame, Image.merge("RGB", (light, light, light)))
    if noise > 0:
        # Per-pixel noise from a tiled 512 px patch: statistically the same to a decoder, far cheaper than 36M draws.
        tile = Image.fromarray(np.clip(rng.standard_normal((512, 512, 3)) * noise + 128, 0, 255).astype(np.uint8))
        grain = Image.new("RGB", size)
        ox, oy = (int(v) for v in rng.integers(0, 512, size=2))
        for ty in range(-oy, h, 512):
            for tx in range(-ox, w, 512):
                grain.paste(tile, (tx, ty))
        frame = ImageChops.add(frame, grain, scale=1.0, offset=-128)
    return frame


def jpeg_bytes(img: Image.Image, quality: int = 85, exif: Image.Exif | bytes | None = None) -> bytes:
    """img encoded as a JPEG, optionally carrying an EXIF block."""
    buf = BytesIO()
    kwargs = {"quality": quality}
    if exif is not None:
        kwargs["exif"] = exif.tobytes() if isinstance(exif, Image.Exif) else exif
    img.convert("RGB").save(buf, format="JPEG", **kwargs)
    return buf.getvalue()


# Stored-pixel transform for each EXIF orientation: the inverse of what ImageOps.exif_transpose applies.
_STORE_FOR_ORIENTATION = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_90,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_270,
}


def exif_rotated_jpeg(img: Image.Image, orientation: int = 6, quality: int = 85) -> bytes:
    """A JPEG whose stored pixels are img turned so that honouring EXIF orientation gives img back upright."""
    if orientation not in (1, *_STORE_FOR_ORIENTATION):
        raise ValueError(f"EXIF orientation {orientation} is not one of 1-8")
    stored = img if orientation == 1 else img.transpose(_STORE_FOR_ORIENTATION[orientation])
    exif = Image.Exif()
    exif[0x0112] = orientation
    return jpeg_bytes(stored, quality=quality, exif=exif)


def heic_bytes(img: Image.Image, quality: int = 80) -> bytes:
    """img encoded as HEIC, as iPhones upload it. Encoding is slow (x265): keep test images small and low-noise."""
    import pillow_heif

    pillow_heif.register_heif_opener()
    buf = BytesIO()
    try:
        # x265's default preset needs ~10 s for a noisy 3 MP photo on 2 cores; ultrafast a fraction of that.
        img.convert("RGB").save(buf, format="HEIF", quality=quality, enc_params={"preset": "ultrafast"})
    except ValueError:  # an x265 build without presets
        buf = BytesIO()
        img.convert("RGB").save(buf, format="HEIF", quality=quality)
    return buf.getvalue()


# Sample books for the demo and benchmarks: invented titles, checksum-valid ISBNs.
SAMPLE_BOOKS: tuple[tuple[str, str, str], ...] = tuple(
    (title, author, valid_isbn13(1000 + i))
    for i, (title, author) in enumerate(
        [
            ("The Quiet Orchard", "Maria Lindqvist"),
            ("Rivers of Salt", "Tomas Ferreira"),
            ("A Grammar of Stars", "Helen Okafor"),
            ("Winter Ledger", "Samuel Adeyemi"),
            ("The Glass Cartographer", "Ines Moreau"),
            ("Lanterns Over Harbour", "Nadia Haddad"),
            ("Small Hours in Lisbon", "Joaquim Reis"),
            ("The Beekeeper's Almanac", "Ruth Calloway"),
        ]
    )
)


def cover_photo_jpeg(
    title: str,
    author: str,
    isbn13: str | None,
    *,
    seed: int = 0,
    size: tuple[int, int] = (4000, 3000),
    barcode: bool = True,
    **kw,
) -> bytes:
    """A photographed cover as phone JPEG bytes: the usual input of every ingest test and benchmark.

    barcode=False prints the ISBN as a line of text without bars (see render_cover); kw go to photograph().
    """
    cover = render_cover(title, author, isbn13, seed=seed, style=seed, barcode=barcode)
    return jpeg_bytes(photograph(cover, size=size, seed=seed, **kw))


# The demo's catalog: SAMPLE_BOOKS without "Small Hours in Lisbon" (its photo is a book the catalog lacks), and
# more invented titles, so that the catalog reads like a small shared shelf.
_MORE_TITLES = [
    ("The Lighthouse Keeper's Daughter", "Agnes Whitfield"), ("Notes from a Paper Boat", "Kenji Moriyama"),
    ("The Cartwright Inheritance", "Eleanor Vance"), ("Salt and Saffron", "Priya Raman"),
    ("Under the Linden Tree", "Friedrich Albers"), ("A Field Guide to Clouds", "Oona MacLeod"),
    ("The Tin Orchestra", "Pavel Novak"), ("Letters to the Ninth Floor", "Claire Dubois"),
    ("The Weight of Feathers", "Amara Nwosu"), ("Midnight at the Observatory", "Luis Cardenas"),
    ("The Last Ferry to Skye", "Morag Campbell"), ("Copper Kettle Mornings", "Hannah Berg"),
    ("An Atlas of Lost Rivers", "Daniel Osei"), ("The Clockmaker's Apprentice", "Ilse Brandt"),
    ("Paper Lanterns", "Mei Lin Chow"), ("The Orchard Keeper's Year", "Thomas Hale"),
    ("Between Two Harbours", "Sofia Andersson"), ("The Honey Thief", "Yusuf Demir"),
    ("Songs of the Tidewater", "Grace Whitaker"), ("A Winter in Kraków", "Marta Zielinska"),
    ("The Map Room", "Oliver Pryce"), ("Seven Bridges", "Aino Virtanen"),
    ("The Olive Press", "Dimitra Kouris"), ("Night Trains to Trieste", "Marco Bellini"),
]
DEMO_CATALOG_BOOKS: tuple[tuple[str, str, str], ...] = tuple(
    b for b in SAMPLE_BOOKS if b[0] != "Small Hours in Lisbon"
) + tuple((title, author, valid_isbn13(2000 + i)) for i, (title, author) in enumerate(_MORE_TITLES))
DEMO_PASSWORD = "covr-demo-password"
DEMO_USERS = ("alice", "bob", "carol")


@dataclass(frozen=True)
class DemoPlan:
    catalog: Path
    # Upload rounds in order: (member, files). Each round is one sensor tick, so a re-take or a forwarded photo is
    # ingested after the photo it repeats.
    uploads: list[tuple[str, list[Path]]]


def _book(title: str) -> tuple[str, str, str]:
    return next(b for b in (*SAMPLE_BOOKS, *DEMO_CATALOG_BOOKS) if b[0] == title)


def write_demo_files(folder: Path) -> DemoPlan:
    """A catalog of ~30 books and three members' photos that exercise every decision: barcodes, covers with only
    a title, a book the catalog lacks, re-takes, a forwarded photo, a byte-identical re-upload, a HEIC, an
    EXIF-rotated photo, an unrecognisable one and hostile files. Existing files are kept: a second run reuses them."""
    folder.mkdir(parents=True, exist_ok=True)
    catalog = folder / "catalog.jsonl"
    catalog.write_text(
        "".join(
            json.dumps({"isbn13": isbn, "title": t, "authors": [a], "published_year": 1960 + (i * 7) % 60,
                        "language": "en", "tags": ["fiction" if i % 3 else "non-fiction"]}) + "\n"
            for i, (t, a, isbn) in enumerate(DEMO_CATALOG_BOOKS)
        )
    )
    size = (2000, 1500)

    def write(name: str, make) -> Path:
        path = folder / name
        if not path.exists():
            tmp = path.with_name(path.name + ".part")
            tmp.write_bytes(make())
            tmp.replace(path)  # an interrupted run leaves no half-written photo behind
        return path

    def photo(name: str, title: str, *, seed: int, barcode: bool = True, front: bool = False, **kw) -> Path:
        """front: a front cover, which carries no ISBN at all (neither bars nor the printed number)."""
        t, author, isbn = _book(title)
        return write(name, lambda: cover_photo_jpeg(t, author, None if front else isbn, seed=seed, size=size,
                                                    barcode=barcode, **kw))

    def shot(title: str, seed: int, **kw) -> Image.Image:
        t, author, isbn = _book(title)
        return photograph(render_cover(t, author, isbn, seed=seed, style=seed), size=size, seed=seed, **kw)

    alice = [
        photo("alice-orchard.jpg", "The Quiet Orchard", seed=1),
        photo("alice-rivers.jpg", "Rivers of Salt", seed=2, background=(90, 90, 100)),
        photo("alice-stars-front.jpg", "A Grammar of Stars", seed=3, front=True, background=(60, 120, 70)),
        photo("alice-lisbon-new.jpg", "Small Hours in Lisbon", seed=4, background=(200, 200, 205)),
        photo("alice-lighthouse.jpg", "The Lighthouse Keeper's Daughter", seed=11),
        photo("alice-clouds.jpg", "A Field Guide to Clouds", seed=12, background=(120, 90, 60)),
        write("alice-ledger.heic", lambda: heic_bytes(shot("Winter Ledger", 13, noise=2.0))),
        write("alice-cartographer-rotated.jpg",
              lambda: exif_rotated_jpeg(shot("The Glass Cartographer", 14), orientation=6)),
    ]
    broken = write("alice-broken.jpg", lambda: alice[0].read_bytes()[:40_000])
    bob = [
        photo("bob-rivers.jpg", "Rivers of Salt", seed=6, angle=5, background=(40, 40, 60)),
        photo("bob-almanac.jpg", "The Beekeeper's Almanac", seed=15),
        photo("bob-tin-orchestra.jpg", "The Tin Orchestra", seed=16, background=(70, 100, 130)),
        photo("bob-harbour.jpg", "Lanterns Over Harbour", seed=17, angle=-2),
        alice[0],  # the very file alice uploaded: the same bytes again
        write("bob-notes.jpg", lambda: b"shopping list: milk, eggs, a new bookmark\n"),
        write("bob-huge.png", lambda: _png_header_only(60_000, 60_000)),
        write("bob-empty.jpg", lambda: b""),
    ]
    carol = [
        write("carol-forwarded-from-bob.jpg", lambda: _forwarded(bob[0])),
        photo("carol-feathers.jpg", "The Weight of Feathers", seed=18),
        photo("carol-skye.jpg", "The Last Ferry to Skye", seed=19, background=(160, 150, 120)),
        photo("carol-map-room.jpg", "The Map Room", seed=20, angle=4),
        write("carol-blank-notebook.jpg", lambda: jpeg_bytes(photograph(
            Image.new("RGB", (1000, 1500), (200, 60, 50)), size=size, seed=21))),
    ]
    retakes = [
        photo("alice-orchard-retake.jpg", "The Quiet Orchard", seed=5, angle=-4, background=(170, 160, 140)),
        photo("carol-feathers-retake.jpg", "The Weight of Feathers", seed=22, angle=-3, background=(60, 60, 70)),
    ]
    return DemoPlan(
        catalog=catalog,
        uploads=[("alice", [*alice, broken]), ("bob", bob), ("carol", carol), ("alice", retakes[:1]),
                 ("carol", retakes[1:])],
    )


def _forwarded(original_path: Path) -> bytes:
    """What a messenger app makes of a photo: smaller and recompressed."""
    with Image.open(original_path) as original:
        buf = BytesIO()
        original.resize((1200, 900)).save(buf, "JPEG", quality=70)
    return buf.getvalue()


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares width x height (a decompression bomb's header) but carries no real pixels."""
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(
        b"IEND", b"")
