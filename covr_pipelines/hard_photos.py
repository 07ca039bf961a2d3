"""Hard sample photos: covers and back covers shot the way people really shoot them, labelled by condition.

sample_photos.py draws the friendly case (a light title band, dark text, a plain table). This module draws the
axes identification has to survive, one condition per photo and mild variation of every other axis:

- covers: light text on dark or busy backgrounds, the title at the top, middle or bottom over shapes, the author
  in capitals, and blurbs, award lines, series lines and "from the author of <another catalog title>";
- photos: keystone up to 25%, tilt up to 12 degrees, a cluttered desk with printed words, a glare spot, low light
  with noise, motion blur, the cover at ~30% of the frame height, upside down, every EXIF orientation;
- back covers: a blurb paragraph, a price and an EAN-13 down to ~2 px per module, tilted up to 25 degrees, under
  glare or in low light.

Everything is deterministic in (condition, seed). `hard_photo_set(seeds)` is what tests and bench/identify.py use;
the tests' seeds are ones the tuning never saw (see HELD_OUT_SEEDS).
"""

from __future__ import annotations

import random
import textwrap
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageChops, ImageDraw, ImageFilter, ImageFont

from covr_pipelines.sample_photos import draw_ean13, exif_rotated_jpeg, jpeg_bytes, valid_isbn13

__all__ = [
    "BACK_CONDITIONS",
    "CONDITIONS",
    "FRONT_CONDITIONS",
    "HARD_CATALOG",
    "HELD_OUT_SEEDS",
    "TUNING_SEEDS",
    "HardPhoto",
    "hard_catalog",
    "hard_photo",
    "hard_photo_set",
    "render_back_cover",
    "render_front_cover",
    "shoot",
]

# Seeds the thresholds were tuned on, and seeds kept for the tests (never looked at while tuning).
TUNING_SEEDS = range(0, 40)
HELD_OUT_SEEDS = range(9000, 9100)

FRONT_CONDITIONS = (
    "light_on_dark",
    "title_bottom",
    "title_middle",
    "author_caps",
    "blurbs",
    "from_the_author_of",
    "keystone",
    "tilt",
    "clutter",
    "glare",
    "low_light",
    "motion_blur",
    "small",
    "upside_down",
    "exif_orientation",
)
BACK_CONDITIONS = ("back_cover", "back_small_barcode", "back_tilted", "back_glare", "back_low_light")
CONDITIONS = FRONT_CONDITIONS + BACK_CONDITIONS


def _isbn(n: int) -> str:
    return valid_isbn13(50_000 + n)


# (title, author, isbn13). Look-alikes on purpose: Dune has two editions (same title and author), and every pair
# below shares words with another. The rest are invented, some with accents or words that run together in OCR.
HARD_CATALOG: tuple[tuple[str, str, str], ...] = (
    ("Dune", "Frank Herbert", _isbn(1)),
    ("Dune", "Frank Herbert", _isbn(2)),
    ("Dune Messiah", "Frank Herbert", _isbn(3)),
    ("Children of Dune", "Frank Herbert", _isbn(4)),
    ("Clean Code", "Robert C. Martin", _isbn(5)),
    ("Clean Architecture", "Robert C. Martin", _isbn(6)),
    ("The Glass Garden", "Maren Solberg", _isbn(7)),
    ("Garden of Glass", "Tobias Wren", _isbn(8)),
    ("The Paper Northern Iron", "Helen Okafor", _isbn(9)),
    ("Shadow Island", "Lucía Ferrán", _isbn(10)),
    ("Rivers of Salt", "Tomas Ferreira", _isbn(11)),
    ("A Grammar of Stars", "Ines Moreau", _isbn(12)),
    ("Winter Ledger", "Samuel Adeyemi", _isbn(13)),
    ("Lanterns Over Harbour", "Nadia Haddad", _isbn(14)),
    ("Café Éternité", "Amélie Durand", _isbn(15)),
    ("The Beekeeper's Almanac", "Ruth Calloway", _isbn(16)),
    ("Small Hours in Lisbon", "Joaquim Reis", _isbn(17)),
    ("The Salt Road", "Priya Raman", _isbn(18)),
    ("Night Train to Oslo", "Erik Dahl", _isbn(19)),
    ("The Cartographer's Daughter", "Mei Lin", _isbn(20)),
    ("Iron and Ember", "Dana Kowalski", _isbn(21)),
    ("The Last Orchard", "Oren Shaked", _isbn(22)),
    ("Moth", "Ada Quist", _isbn(23)),
    ("Blue Hour", "Kenji Mori", _isbn(24)),
)

_FILLER_ADJECTIVES = "silent great dark lost hidden last golden broken secret wild quiet burning clean blue iron".split()
_FILLER_NOUNS = ("garden glass road island shadow night salt river stone code children winter orchard harbour "
                 "train ember hour architecture messiah").split()
_FILLER_FIRST = "Anna James Maria Peter Laura David Sofia Thomas Elena Mark Clara Henry Rachel Frank Jane".split()
_FILLER_LAST = "Carter Holm Novak Reyes Fischer Brandt Okafor Lindqvist Moreau Kaplan Ito Walsh Herbert Martin".split()


def hard_catalog(filler: int = 300) -> list[tuple[str, list[str], str]]:
    """Catalog rows (title, authors, isbn13): HARD_CATALOG plus `filler` invented books built from the same words
    ("The Glass Road", "Clean Island", authors named Herbert or Martin), so every photo has near misses to beat."""
    rows = [(t, [a], i) for t, a, i in HARD_CATALOG]
    seen = {t for t, _, _ in HARD_CATALOG}
    rng = random.Random(20261202)
    n = 0
    while len(rows) < len(HARD_CATALOG) + filler:
        pattern = rng.choice(["The {a} {n}", "{a} {n}", "The {n} of the {a} {n}", "{n} of {n}", "{n}"])
        title = pattern.format(a=rng.choice(_FILLER_ADJECTIVES).title(), n=rng.choice(_FILLER_NOUNS).title())
        if title in seen:
            continue
        seen.add(title)
        n += 1
        rows.append((title, [f"{rng.choice(_FILLER_FIRST)} {rng.choice(_FILLER_LAST)}"], valid_isbn13(70_000 + n)))
    return rows


# Fonts of fonts-dejavu-core, plus the condensed and oblique cuts where the system has them; faces that are missing
# fall back to the core ones, and horizontal stretching and letter spacing vary the shapes further.
_FONT_DIRS = ("/usr/share/fonts/truetype/dejavu", "/usr/share/fonts/dejavu", "/usr/local/share/fonts")
_TITLE_FACES = (
    "DejaVuSans-Bold.ttf",
    "DejaVuSerif-Bold.ttf",
    "DejaVuSansCondensed-Bold.ttf",
    "DejaVuSerifCondensed-Bold.ttf",
    "DejaVuSans.ttf",
    "DejaVuSerif.ttf",
    "DejaVuSansMono-Bold.ttf",
    "DejaVuSans-BoldOblique.ttf",
)
_TEXT_FACES = ("DejaVuSans.ttf", "DejaVuSerif.ttf", "DejaVuSansCondensed.ttf", "DejaVuSerif-Italic.ttf")
_FALLBACK = {"Serif": "DejaVuSerif-Bold.ttf", "Mono": "DejaVuSansMono.ttf"}

_font_cache: dict[tuple[str, int], ImageFont.FreeTypeFont | ImageFont.ImageFont] = {}


def _font(face: str, size: int):
    key = (face, size)
    if key not in _font_cache:
        candidates = [face, *[v for k, v in _FALLBACK.items() if k in face], "DejaVuSans-Bold.ttf", "DejaVuSans.ttf"]
        for name in candidates:
            path = next((Path(d) / name for d in _FONT_DIRS if (Path(d) / name).exists()), None)
            if path is not None:
                _font_cache[key] = ImageFont.truetype(str(path), size)
                break
        else:
            _font_cache[key] = ImageFont.load_default(size=size)
    return _font_cache[key]


_BLURBS = (
    "\u201cA luminous, unforgettable novel\u201d \u2014 The Observer",
    "\u201cI could not put it down\u201d \u2014 Sunday Times",
    "\u201cDazzling\u201d \u2014 The Guardian",
    "\u201cThe book of the year\u201d \u2014 Literary Review",
)
_AWARDS = ("WINNER OF THE HUGO AWARD", "SHORTLISTED FOR THE BOOKER PRIZE", "INTERNATIONAL BESTSELLER",
           "OVER ONE MILLION COPIES SOLD")
_SERIES = ("BOOK TWO OF THE NORTHERN SAGA", "A MEREDITH HALE MYSTERY", "THE HARBOUR TRILOGY \u2022 I")
# Printed words on the desk: papers, a newspaper, a mug. Some are catalog words on purpose.
_CLUTTER_WORDS = (
    "invoice meeting tuesday garden quarterly report budget notes coffee island review agenda minutes "
    "weather orchard clean salt road deadline draft chapter market city council train glass winter news"
).split()
_BACK_PARAGRAPH = (
    "In a city of bridges and rain, one woman discovers a letter that should never have been written. What "
    "follows is a journey across three decades, two continents and the silence between a mother and her son. "
    "Tender, funny and fierce, this is a story about the maps we draw of the people we love."
)


_COVER_SIZE = (800, 1200)


@dataclass(frozen=True)
class HardPhoto:
    """One generated photo: what it shows, which condition it stresses, and the JPEG bytes an upload would carry."""

    name: str
    condition: str
    title: str
    author: str
    isbn13: str
    side: str  # front | back
    jpeg: bytes

    @property
    def expects_barcode(self) -> bool:
        return self.side == "back"


# --- covers ----------------------------------------------------------------------------------------------------


def _luma(c) -> float:
    return 0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2]


def _text_image(text: str, font, fill, *, spacing: int = 0, stretch: float = 1.0) -> Image.Image:
    """Text on a transparent layer, with letter spacing and horizontal stretch (condensed or extended faces)."""
    probe = ImageDraw.Draw(Image.new("L", (1, 1)))
    widths = [probe.textlength(ch, font=font) for ch in text]
    ascent, descent = font.getmetrics()
    w = int(sum(widths) + spacing * max(0, len(text) - 1)) + 4
    layer = Image.new("RGBA", (max(1, w), ascent + descent + 4), (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    if spacing == 0:
        draw.text((2, 2), text, font=font, fill=fill)
    else:
        x = 2.0
        for ch, cw in zip(text, widths, strict=True):
            draw.text((x, 2), ch, font=font, fill=fill)
            x += cw + spacing
    if stretch != 1.0:
        layer = layer.resize((max(1, int(layer.width * stretch)), layer.height), Image.Resampling.BICUBIC)
    return layer


def _fit_text(text: str, face: str, size: int, max_w: int, fill, *, spacing_em: float, stretch: float,
              max_lines: int) -> list[Image.Image]:
    """Rendered lines of `text`, the largest size from `size` down at which it wraps into max_lines lines."""
    while True:
        font = _font(face, size)
        spacing = int(size * spacing_em)
        per_char = max(1.0, (font.getlength("abcdefghijklmnopqrstuvwxyz") / 26 + spacing) * stretch)
        lines = textwrap.wrap(text, width=max(1, int(max_w / per_char)), break_long_words=False) or [text]
        images = [_text_image(line, font, fill, spacing=spacing, stretch=stretch) for line in lines]
        if (len(lines) <= max_lines and max(i.width for i in images) <= max_w) or size <= 14:
            return images
        size = int(size * 0.9)


def _background(rng: random.Random, size, *, dark: bool, busy: bool) -> Image.Image:
    w, h = size
    lo, hi = (10, 70) if dark else (165, 245)
    base = tuple(rng.randint(lo, hi) for _ in range(3))
    top = np.array(base, np.float32)
    bottom = np.array([min(255, max(0, c + rng.randint(-40, 40))) for c in base], np.float32)
    t = np.linspace(0, 1, h, dtype=np.float32)[:, None, None]
    arr = np.broadcast_to(top * (1 - t) + bottom * t, (h, w, 3))
    img = Image.fromarray(arr.astype(np.uint8))
    draw = ImageDraw.Draw(img)
    shapes = rng.randint(6, 14) if busy else rng.randint(2, 5)
    for _ in range(shapes):
        shade = tuple(max(0, min(255, c + rng.randint(-90, 90))) for c in base)
        cx, cy, r = rng.randint(0, w), rng.randint(0, h), rng.randint(w // 12, w // 3)
        kind = rng.random()
        if kind < 0.5:
            draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=shade)
        elif kind < 0.8:
            draw.polygon([(cx, cy - r), (cx + r, cy + r), (cx - r, cy + r)], fill=shade)
        else:
            draw.rectangle((0, cy, w, cy + r // 3), fill=shade)
    if busy:
        # Photographic texture behind the text: low-frequency noise, upsampled.
        noise = np.random.default_rng(rng.randrange(1 << 30)).standard_normal((h // 24 + 1, w // 24 + 1, 3))
        tex = Image.fromarray(np.clip(noise * 30 + 128, 0, 255).astype(np.uint8)).resize((w, h),
                                                                                      Image.Resampling.BICUBIC)
        img = ImageChops.add(img, tex, scale=1.0, offset=-128)
    return img


def _paste_lines(img: Image.Image, lines: list[Image.Image], y: int, *, align: str, margin: int,
                 gap: float = 0.12) -> int:
    for line in lines:
        x = {"center": (img.width - line.width) // 2, "left": margin, "right": img.width - margin - line.width}[align]
        img.paste(line, (x, y), line)
        y += int(line.height * (1 + gap))
    return y


def render_front_cover(title: str, author: str, *, seed: int, condition: str = "", other_title: str = "the Ember",
                       size: tuple[int, int] = _COVER_SIZE) -> Image.Image:
    """A front cover without barcode, its layout (placement, faces, casing, extra lines) varied by seed and pushed
    towards `condition`."""
    rng = random.Random(f"front-{condition}-{seed}")
    w, h = size
    dark = condition == "light_on_dark" or rng.random() < 0.45
    busy = condition in ("light_on_dark", "title_middle") or rng.random() < 0.35
    img = _background(rng, size, dark=dark, busy=busy)
    bg = img.resize((1, 1), Image.Resampling.BOX).getpixel((0, 0))
    light = _luma(bg) < 128
    ink = (rng.randint(225, 255), rng.randint(215, 250), rng.randint(190, 240)) if light else (
        rng.randint(0, 50), rng.randint(0, 40), rng.randint(0, 60))
    accent = (250, 200, 60) if light else (150, 20, 30)

    placement = {"title_bottom": "bottom", "title_middle": "middle"}.get(condition) or rng.choice(
        ("top", "top", "middle", "bottom"))
    align = rng.choice(("center", "center", "left"))
    margin = int(w * 0.08)
    title_text = title.upper() if rng.random() < 0.5 else title
    author_text = author.upper() if condition == "author_caps" or rng.random() < 0.5 else author
    face = rng.choice(_TITLE_FACES)
    title_lines = _fit_text(title_text, face, int(w * rng.uniform(0.11, 0.16)), int(w * 0.84), ink,
                            spacing_em=rng.choice((0.0, 0.0, 0.05, 0.12)), stretch=rng.choice((1.0, 0.85, 1.1)),
                            max_lines=3)
    author_lines = _fit_text(author_text, rng.choice(_TEXT_FACES + _TITLE_FACES[:2]), int(w * rng.uniform(0.045, 0.07)),
                             int(w * 0.84), ink, spacing_em=rng.choice((0.0, 0.1, 0.2)), stretch=1.0, max_lines=1)
    title_h = sum(int(i.height * 1.12) for i in title_lines)

    extras: list[list[Image.Image]] = []
    small = int(w * 0.032)
    if condition == "blurbs" or rng.random() < 0.4:
        extras.append(_fit_text(rng.choice(_BLURBS), rng.choice(_TEXT_FACES), small, int(w * 0.84), ink,
                                spacing_em=0.0, stretch=1.0, max_lines=2))
    if condition == "blurbs" or rng.random() < 0.3:
        extras.append(_fit_text(rng.choice(_AWARDS), "DejaVuSans-Bold.ttf", small, int(w * 0.84), accent,
                                spacing_em=0.08, stretch=1.0, max_lines=1))
    if condition == "blurbs" or rng.random() < 0.2:
        extras.append(_fit_text(rng.choice(_SERIES), "DejaVuSans.ttf", small, int(w * 0.84), ink,
                                spacing_em=0.1, stretch=1.0, max_lines=1))
    if condition == "from_the_author_of" or rng.random() < 0.2:
        line = f"FROM THE AUTHOR OF {other_title.upper()}" if rng.random() < 0.5 else (
            f"By the bestselling author of {other_title}")
        extras.append(_fit_text(line, rng.choice(_TEXT_FACES), int(w * 0.038), int(w * 0.84), ink,
                                spacing_em=0.0, stretch=1.0, max_lines=2))

    if placement == "top":
        y = int(h * rng.uniform(0.06, 0.12))
        y = _paste_lines(img, title_lines, y, align=align, margin=margin)
        y = _paste_lines(img, author_lines, y + int(h * 0.03), align=align, margin=margin)
        y = max(y + int(h * 0.1), int(h * 0.6))
        for block in extras:
            y = _paste_lines(img, block, y, align="center", margin=margin) + int(h * 0.02)
    else:
        y = int(h * 0.05)
        top_author = rng.random() < 0.5
        if top_author:
            y = _paste_lines(img, author_lines, y, align=align, margin=margin) + int(h * 0.03)
        for block in extras[:2]:
            y = _paste_lines(img, block, y, align="center", margin=margin) + int(h * 0.02)
        ty = int(h * 0.42) - title_h // 2 if placement == "middle" else int(h * 0.9) - title_h - (
            0 if top_author else int(h * 0.08))
        ty = max(ty, y + int(h * 0.03))
        y = _paste_lines(img, title_lines, ty, align=align, margin=margin)
        if not top_author:
            y = _paste_lines(img, author_lines, y + int(h * 0.02), align=align, margin=margin)
        for block in extras[2:]:
            by = int(h * 0.62) if placement == "middle" else int(h * 0.3)
            _paste_lines(img, block, by, align="center", margin=margin)
    return img


def render_back_cover(title: str, author: str, isbn13: str, *, seed: int, module: int = 3,
                      size: tuple[int, int] = _COVER_SIZE) -> Image.Image:
    """A back cover: the title small at the top, a blurb paragraph, quotes, a price and the EAN-13 with its caption."""
    rng = random.Random(f"back-{seed}")
    w, h = size
    dark = rng.random() < 0.4
    img = _background(rng, size, dark=dark, busy=False)
    ink = (240, 238, 230) if dark else (25, 25, 30)
    margin = int(w * 0.09)
    y = _paste_lines(img, _fit_text(title.upper(), "DejaVuSerif-Bold.ttf", int(w * 0.05), int(w * 0.8), ink,
                                    spacing_em=0.05, stretch=1.0, max_lines=2), int(h * 0.06), align="center",
                     margin=margin)
    face = rng.choice(_TEXT_FACES)
    y = _paste_lines(img, _fit_text(_BACK_PARAGRAPH, face, int(w * 0.035), int(w * 0.82), ink, spacing_em=0.0,
                                    stretch=1.0, max_lines=9), y + int(h * 0.04), align="left", margin=margin,
                     gap=0.25)
    _paste_lines(img, _fit_text(rng.choice(_BLURBS), face, int(w * 0.03), int(w * 0.82), ink, spacing_em=0.0,
                                stretch=1.0, max_lines=2), y + int(h * 0.03), align="left", margin=margin)
    price = rng.choice(("$17.99 US / $23.99 CAN", "\u00a39.99", "\u20ac14,90", "US $16.00"))
    code = draw_ean13(isbn13, module=module, caption=f"ISBN {isbn13[:3]}-{isbn13[3]}-{isbn13[4:7]}-"
                      f"{isbn13[7:12]}-{isbn13[12]}")
    pad = module * 4
    box = Image.new("RGB", (code.width + 2 * pad, code.height + 2 * pad), (255, 255, 255))
    box.paste(code.convert("RGB"), (pad, pad))
    bx = w - box.width - margin if rng.random() < 0.7 else margin
    by = h - box.height - int(h * 0.05)
    img.paste(box, (bx, by))
    price_img = _text_image(price, _font("DejaVuSans-Bold.ttf", int(w * 0.03)), ink)
    px = margin if bx > w // 2 else w - margin - price_img.width
    img.paste(price_img, (px, by + box.height - price_img.height), price_img)
    return img


# --- photographs -------------------------------------------------------------------------------------------------


def _perspective_coeffs(dst: list[tuple[float, float]], src: list[tuple[float, float]]) -> list[float]:
    """Coefficients for Image.transform(PERSPECTIVE): output point (x, y) in `dst` maps to input point in `src`."""
    rows = []
    for (x, y), (u, v) in zip(dst, src, strict=True):
        rows.append([x, y, 1, 0, 0, 0, -u * x, -u * y])
        rows.append([0, 0, 0, x, y, 1, -v * x, -v * y])
    a = np.array(rows, dtype=np.float64)
    b = np.array([c for pt in src for c in pt], dtype=np.float64)
    return np.linalg.solve(a, b).tolist()


def _desk(rng: np.random.Generator, size, *, clutter: bool) -> Image.Image:
    """A table top, with sheets of printed words, a mug and a pen when cluttered."""
    w, h = size
    base = np.array(rng.integers(60, 200, size=3), np.float32)
    sw, sh = max(8, w // 8), max(8, h // 8)
    yy = np.linspace(0, 1, sh, dtype=np.float32)[:, None]
    xx = np.linspace(0, 1, sw, dtype=np.float32)[None, :]
    grain = np.sin((yy * rng.uniform(20, 60) + np.sin(xx * rng.uniform(2, 6)) * 0.8) * 6.28)
    small = np.clip(grain * 12 + rng.standard_normal((sh, sw)).astype(np.float32) * 6, -40, 40)
    desk = Image.fromarray(np.clip(base[None, None, :] + small[:, :, None], 0, 255).astype(np.uint8)).resize(
        (w, h), Image.Resampling.BILINEAR)
    if not clutter:
        return desk
    prng = random.Random(int(rng.integers(1 << 30)))
    for _ in range(prng.randint(2, 4)):
        pw, ph = int(w * prng.uniform(0.25, 0.45)), int(h * prng.uniform(0.3, 0.6))
        sheet = Image.new("RGB", (pw, ph), tuple(prng.randint(220, 250) for _ in range(3)))
        d = ImageDraw.Draw(sheet)
        # Office print seen from a phone's distance: body text 1.4-3% of the frame height, headings half again.
        font_h = max(10, int(h * prng.uniform(0.014, 0.03)))
        heading = _font("DejaVuSans-Bold.ttf", int(font_h * 1.5))
        d.text((int(pw * 0.06), int(ph * 0.04)), " ".join(prng.sample(_CLUTTER_WORDS, 2)).upper(), font=heading,
                fill=(20, 20, 20))
        body = _font(prng.choice(_TEXT_FACES), font_h)
        for row in range(2, 14):
            d.text((int(pw * 0.06), int(ph * 0.04) + row * int(font_h * 1.4)),
                   " ".join(prng.sample(_CLUTTER_WORDS, 4)), font=body, fill=(40, 40, 40))
        sheet = sheet.rotate(prng.uniform(-30, 30), expand=True, fillcolor=(0, 0, 0))
        mask = sheet.convert("L").point(lambda v: 255 if v > 10 else 0)
        desk.paste(sheet, (prng.randint(-pw // 3, w - pw // 2), prng.randint(-ph // 3, h - ph // 2)), mask)
    d = ImageDraw.Draw(desk)
    r = int(h * 0.12)
    cx, cy = prng.randint(0, w), prng.randint(0, h)
    d.ellipse((cx - r, cy - r, cx + r, cy + r), fill=tuple(prng.randint(0, 255) for _ in range(3)),
              outline=(240, 240, 240), width=max(2, r // 8))
    x0, y0 = prng.randint(0, w), prng.randint(0, h)
    d.line((x0, y0, x0 + int(w * 0.3), y0 + int(h * 0.1)), fill=(20, 30, 120), width=max(3, h // 120))
    return desk


def _motion_blur(img: Image.Image, length: float, angle_deg: float) -> Image.Image:
    """Average of shifted copies along a line: a camera moving during the exposure."""
    steps = max(2, int(length))
    dx, dy = np.cos(np.radians(angle_deg)), np.sin(np.radians(angle_deg))
    acc = np.zeros((img.height, img.width, 3), np.float32)
    src = np.asarray(img, np.float32)
    for i in range(steps):
        t = i - (steps - 1) / 2
        acc += np.roll(src, (int(round(t * dy)), int(round(t * dx))), axis=(0, 1))
    return Image.fromarray(np.clip(acc / steps, 0, 255).astype(np.uint8))


def shoot(cover: Image.Image, *, seed: int, condition: str = "", size: tuple[int, int] = (1280, 960),
          fill: float | None = None, tilt: float | None = None, keystone: float | None = None) -> Image.Image:
    """An RGB phone-like photo of `cover`: keystone, tilt, desk, light, glare, noise and blur pushed by condition."""
    rng = np.random.default_rng([seed, CONDITIONS.index(condition) if condition in CONDITIONS else 99])
    w, h = size
    clutter = condition == "clutter" or rng.random() < 0.25
    frame = _desk(rng, size, clutter=clutter)

    small = condition in ("small", "back_small_barcode")
    if fill is None:
        fill = float(rng.uniform(0.28, 0.34)) if small else float(rng.uniform(0.6, 0.85))
    if tilt is None:
        if condition in ("tilt",):
            tilt = float(rng.choice((-1, 1)) * rng.uniform(8, 12))
        elif condition == "back_tilted":
            tilt = float(rng.choice((-1, 1)) * rng.uniform(15, 25))
        else:
            tilt = float(rng.uniform(-4, 4))
    if keystone is None:
        keystone = float(rng.uniform(0.15, 0.25)) if condition == "keystone" else float(rng.uniform(0.0, 0.08))

    ch = h * fill
    cw = ch * cover.width / cover.height
    # Keystone: the far edge (top, or a side) is shorter; then the quad is rotated by tilt about its centre.
    half_w, half_h = cw / 2, ch / 2
    far = rng.choice(("top", "top", "left", "right"))
    k = keystone
    quad = [(-half_w, -half_h), (half_w, -half_h), (half_w, half_h), (-half_w, half_h)]
    if far == "top":
        quad[0] = (-half_w * (1 - k), -half_h * (1 - k / 3))
        quad[1] = (half_w * (1 - k), -half_h * (1 - k / 3))
    elif far == "left":
        quad[0] = (-half_w * (1 - k / 3), -half_h * (1 - k))
        quad[3] = (-half_w * (1 - k / 3), half_h * (1 - k))
    else:
        quad[1] = (half_w * (1 - k / 3), -half_h * (1 - k))
        quad[2] = (half_w * (1 - k / 3), half_h * (1 - k))
    a = np.radians(tilt)
    rot = [(x * np.cos(a) - y * np.sin(a), x * np.sin(a) + y * np.cos(a)) for x, y in quad]
    xs, ys = [p[0] for p in rot], [p[1] for p in rot]
    span_x, span_y = max(xs) - min(xs), max(ys) - min(ys)
    cx = float(rng.uniform(span_x / 2, max(span_x / 2, w - span_x / 2)))
    cy = float(rng.uniform(span_y / 2, max(span_y / 2, h - span_y / 2)))
    if not small:
        cx, cy = (cx + w / 2) / 2, (cy + h / 2) / 2
    dst = [(x + cx, y + cy) for x, y in rot]
    src = [(0, 0), (cover.width, 0), (cover.width, cover.height), (0, cover.height)]
    # Render from a cover scaled near its size in the frame: transform() samples without a low-pass filter.
    scale = max(1e-3, cw / cover.width)
    if scale < 0.7:
        cover = cover.resize((max(1, int(cover.width * scale * 1.4)), max(1, int(cover.height * scale * 1.4))),
                             Image.Resampling.BOX)
        src = [(0, 0), (cover.width, 0), (cover.width, cover.height), (0, cover.height)]
    coeffs = _perspective_coeffs(dst, src)
    placed = cover.convert("RGB").transform(size, Image.Transform.PERSPECTIVE, coeffs, Image.Resampling.BILINEAR)
    mask = Image.new("L", cover.size, 255).transform(size, Image.Transform.PERSPECTIVE, coeffs,
                                                     Image.Resampling.BILINEAR)
    # A soft shadow under the book, then the book.
    shadow = mask.filter(ImageFilter.GaussianBlur(h / 80)).point(lambda v: int(v * 0.5))
    frame.paste((0, 0, 0), (int(h / 100), int(h / 100)), shadow)
    frame.paste(placed, (0, 0), mask)

    # Lens blur in pixels grows with the frame only up to a downscaled photo's size: a phone's in-focus blur at its
    # native 12 MP is about one pixel (sigma 0.45-1.35 here), not 3x the 960-px figure.
    lens_blur = float(rng.uniform(0.3, 0.9)) * min(h, 1440) / 960
    frame = frame.filter(ImageFilter.GaussianBlur(lens_blur))
    if condition == "motion_blur":
        frame = _motion_blur(frame, float(rng.uniform(5, 9)) * h / 960, float(rng.uniform(0, 180)))

    # Light: a gradient across the frame; low light darkens it and raises the sensor noise.
    low = condition in ("low_light", "back_low_light")
    level = float(rng.uniform(0.28, 0.4)) if low else float(rng.uniform(0.85, 1.0))
    gx = np.linspace(-1, 1, 32, dtype=np.float32)[None, :] * rng.uniform(-0.2, 0.2)
    gy = np.linspace(-1, 1, 24, dtype=np.float32)[:, None] * rng.uniform(-0.15, 0.15)
    shade = np.clip((1.0 + gx + gy) * level, 0, 1)
    light = Image.fromarray((shade * 255).astype(np.uint8)).resize(size, Image.Resampling.BILINEAR)
    frame = ImageChops.multiply(frame, Image.merge("RGB", (light, light, light)))

    if condition in ("glare", "back_glare") or rng.random() < 0.1:
        # A specular highlight: a bright, saturated blob on the cover (often over the title or the bars).
        gx0 = float(np.mean([p[0] for p in dst]) + rng.uniform(-0.25, 0.25) * cw)
        gy0 = float(np.mean([p[1] for p in dst]) + rng.uniform(-0.35, 0.35) * ch)
        if condition == "back_glare":
            gy0 = float(np.mean([p[1] for p in dst]) + 0.3 * ch)
        radius = float(rng.uniform(0.12, 0.2)) * ch
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        blob = np.exp(-(((xx - gx0) ** 2) / (2 * radius**2) + ((yy - gy0) ** 2) / (2 * (radius * 0.7) ** 2)))
        glare = Image.fromarray(np.clip(blob * 230, 0, 255).astype(np.uint8))
        frame = ImageChops.add(frame, Image.merge("RGB", (glare, glare, glare)))

    noise = float(rng.uniform(10, 16)) if low else float(rng.uniform(2, 6))
    grain = np.clip(rng.standard_normal((h, w, 1)).astype(np.float32) * noise, -128, 127)
    arr = np.asarray(frame, np.float32) + grain
    frame = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
    if condition == "upside_down":
        frame = frame.rotate(180)
    return frame


def hard_photo(condition: str, seed: int, *, size: tuple[int, int] = (1280, 960), quality: int = 85) -> HardPhoto:
    """One photo stressing `condition`, of a catalog book chosen by seed (look-alikes come up often)."""
    if condition not in CONDITIONS:
        raise ValueError(f"unknown condition {condition!r}; expected one of {', '.join(CONDITIONS)}")
    rng = random.Random(f"pick-{condition}-{seed}")
    # Half the photos show a look-alike (the first eight books), so both directions of every pair come up.
    title, author, isbn13 = HARD_CATALOG[rng.randrange(8)] if rng.random() < 0.5 else rng.choice(HARD_CATALOG)
    others = [t for t, _, _ in HARD_CATALOG if t != title]
    # "From the author of" names a look-alike when there is one: the hardest pull.
    lookalikes = [t for t in others if set(t.lower().split()) & set(title.lower().split()) - {"the", "of", "a"}]
    other_title = rng.choice(lookalikes or others)
    back = condition in BACK_CONDITIONS
    if back:
        # The module width in the frame is what a barcode reader sees: about 2 px for back_small_barcode,
        # 2.4-3.2 px otherwise, whatever the frame size.
        fill = 0.85 if condition == "back_small_barcode" else float(rng.uniform(0.75, 0.9))
        target_px = 2.0 if condition == "back_small_barcode" else rng.uniform(2.4, 3.2)
        module = max(1, round(target_px / (fill * size[1] / _COVER_SIZE[1])))
        cover = render_back_cover(title, author, isbn13, seed=seed, module=module)
        photo = shoot(cover, seed=seed, condition=condition, size=size, fill=fill)
    else:
        cover = render_front_cover(title, author, seed=seed, condition=condition, other_title=other_title)
        photo = shoot(cover, seed=seed, condition=condition, size=size)
    name = f"{condition}-{seed}"
    if condition == "exif_orientation":
        orientation = 2 + seed % 7
        data = exif_rotated_jpeg(photo, orientation=orientation, quality=quality)
        name = f"{name}-o{orientation}"
    else:
        data = jpeg_bytes(photo, quality=quality)
    return HardPhoto(name, condition, title, author, isbn13, "back" if back else "front", data)


def hard_photo_set(seeds, *, conditions=CONDITIONS, size: tuple[int, int] = (1280, 960)) -> list[HardPhoto]:
    """One photo per (condition, seed)."""
    return [hard_photo(c, s, size=size) for s in seeds for c in conditions]
