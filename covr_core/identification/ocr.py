"""Text from cover images through one OcrEngine interface, backed by tesserocr (in-process) or pytesseract."""

from __future__ import annotations

import glob
import logging
import os
import re
import threading
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageOps

# Tesseract's OpenMP threads contend with the pipeline's own parallelism on small machines; the limit must be set
# before libtesseract loads, which is why it sits at import time rather than in an engine constructor.
os.environ.setdefault("OMP_THREAD_LIMIT", "1")

__all__ = [
    "OcrEngine",
    "OcrLine",
    "OcrResult",
    "PytesseractEngine",
    "TesserocrEngine",
    "find_tessdata",
    "make_ocr_engine",
    "ocr_for_identification",
]

log = logging.getLogger(__name__)

_TESSDATA_GLOBS = (
    "/usr/share/tesseract-ocr/*/tessdata",
    "/usr/share/tessdata",
    "/usr/local/share/tessdata",
    "/opt/homebrew/share/tessdata",
)

DEFAULT_PSM = 3  # fully automatic page segmentation

# Tesseract guesses the page's x-height from a percentile of blob sizes (default the 75th) and drops rows far
# smaller or larger as noise or images. A cover mixes a huge title with a small "ISBN 978-..." caption, and the
# default lost the caption on 19 of 24 generated covers; at the 40th percentile all 24 captions and titles were read.
# Lower (25th) let a textured table top in a photo drag the guess down until that photo's title was lost.
TESSERACT_VARIABLES = {"textord_initialx_ile": "0.4"}


# Tesseract's line confidence (0-100) below which a line is mostly background read as text.
CONFIDENT_LINE = 50.0


@dataclass(frozen=True)
class OcrLine:
    """One recognised text line: its text, tesseract's confidence (0-100) and its height relative to the image's
    long side, so lines read at different scales compare. The tallest confident line is usually the title."""

    text: str
    confidence: float
    height: float


@dataclass(frozen=True)
class OcrResult:
    """Recognised text, tesseract's mean word confidence (0-100, None if the engine gives none), wall time, and
    the text line by line with confidences and heights."""

    text: str
    mean_confidence: float | None
    ms: float
    lines: tuple[OcrLine, ...] = ()

    def confident_text(self, min_confidence: float = CONFIDENT_LINE) -> str:
        """Only the lines tesseract is fairly sure of: a textured table or a hand reads as low-confidence junk."""
        if not self.lines:
            return self.text
        return "".join(f"{line.text}\n" for line in self.lines if line.confidence >= min_confidence)


class OcrEngine(ABC):
    """Reads the text in one image."""

    name: str

    @abstractmethod
    def read_text(self, image: Image.Image) -> OcrResult: ...


def find_tessdata() -> str:
    """The tessdata folder holding eng.traineddata: $TESSDATA_PREFIX if set, else the usual install locations."""
    env = os.environ.get("TESSDATA_PREFIX")
    if env:
        # Tesseract accepts both the tessdata folder and its parent here.
        for candidate in (Path(env), Path(env) / "tessdata"):
            if (candidate / "eng.traineddata").exists():
                return str(candidate)
        raise FileNotFoundError(f"TESSDATA_PREFIX={env} has no eng.traineddata (looked in {env} and {env}/tessdata)")
    looked: list[str] = []
    for pattern in _TESSDATA_GLOBS:
        for folder in sorted(glob.glob(pattern), reverse=True):  # newest version folder first (5 before 4.00)
            if (Path(folder) / "eng.traineddata").exists():
                return folder
        looked.append(pattern)
    raise FileNotFoundError(
        "no tessdata folder with eng.traineddata found; set TESSDATA_PREFIX or install tesseract-ocr-eng "
        f"(looked in {', '.join(looked)})"
    )


def _gray(image: Image.Image) -> Image.Image:
    # Tesseract binarises grayscale itself; giving it 1 byte per pixel instead of 3 saves the conversion and copy.
    return image if image.mode == "L" else image.convert("L")


class TesserocrEngine(OcrEngine):
    """Tesseract through its C API, in-process: no subprocess, no image encoding, one loaded model per instance."""

    name = "tesserocr"

    def __init__(self, tessdata: str | None = None, lang: str = "eng", psm: int = DEFAULT_PSM) -> None:
        import tesserocr

        self.tessdata = tessdata or find_tessdata()
        # PyTessBaseAPI keeps per-image state, so concurrent read_text calls on one instance must take turns.
        self._lock = threading.Lock()
        self._api = tesserocr.PyTessBaseAPI(path=self.tessdata, lang=lang, psm=psm)
        for key, value in TESSERACT_VARIABLES.items():
            if not self._api.SetVariable(key, value):
                raise RuntimeError(f"tesseract {tesserocr.tesseract_version()!r} rejected variable {key}={value}")

    def read_text(self, image: Image.Image) -> OcrResult:
        gray = _gray(image)
        data = gray.tobytes()
        start = time.perf_counter()
        with self._lock:
            # SetImageBytes does not copy: `data` must outlive recognition, which the local variable ensures.
            self._api.SetImageBytes(data, gray.width, gray.height, 1, gray.width)
            text = self._api.GetUTF8Text()
            conf = self._api.MeanTextConf()
            lines = self._lines(max(gray.size)) if text.strip() else ()
        ms = (time.perf_counter() - start) * 1000
        return OcrResult(text=text, mean_confidence=float(conf) if text.strip() else None, ms=ms, lines=lines)

    def _lines(self, long_side: int) -> tuple[OcrLine, ...]:
        from tesserocr import RIL, iterate_level

        out = []
        for line in iterate_level(self._api.GetIterator(), RIL.TEXTLINE):
            text = (line.GetUTF8Text(RIL.TEXTLINE) or "").strip()
            box = line.BoundingBox(RIL.TEXTLINE)
            if text and box:
                out.append(OcrLine(text, float(line.Confidence(RIL.TEXTLINE)), (box[3] - box[1]) / long_side))
        return tuple(out)

    def close(self) -> None:
        with self._lock:
            self._api.End()


class PytesseractEngine(OcrEngine):
    """Tesseract as a subprocess per image: slower (process start, PNG round trip) but needs only the binary."""

    name = "pytesseract"

    def __init__(self, tessdata: str | None = None, lang: str = "eng", psm: int = DEFAULT_PSM) -> None:
        import pytesseract

        self._pytesseract = pytesseract
        self.tessdata = tessdata or find_tessdata()
        self.lang = lang
        self.psm = psm
        self._variables = " ".join(f"-c {k}={v}" for k, v in TESSERACT_VARIABLES.items())
        # Fails here, naming the binary, rather than on the first photo.
        self.version = str(pytesseract.get_tesseract_version())

    def read_text(self, image: Image.Image) -> OcrResult:
        gray = _gray(image)
        start = time.perf_counter()
        data = self._pytesseract.image_to_data(
            gray,
            lang=self.lang,
            config=f'--psm {self.psm} --tessdata-dir "{self.tessdata}" {self._variables}',
            output_type=self._pytesseract.Output.DICT,
        )
        ms = (time.perf_counter() - start) * 1000
        text = _text_from_tsv(data)
        confs = [float(c) for c, w in zip(data["conf"], data["text"], strict=True) if float(c) >= 0 and w.strip()]
        return OcrResult(
            text=text,
            mean_confidence=sum(confs) / len(confs) if confs else None,
            ms=ms,
            lines=_lines_from_tsv(data, max(gray.size)),
        )


def _text_from_tsv(data: dict) -> str:
    """Words joined by spaces within a line and newlines between lines, as GetUTF8Text lays them out."""
    lines: list[str] = []
    current_key = None
    for word, block, par, line in zip(data["text"], data["block_num"], data["par_num"], data["line_num"], strict=True):
        if not word.strip():
            continue
        key = (block, par, line)
        if key != current_key:
            lines.append(word)
            current_key = key
        else:
            lines[-1] += " " + word
    return "\n".join(lines) + ("\n" if lines else "")


def _lines_from_tsv(data: dict, long_side: int) -> tuple[OcrLine, ...]:
    """Per-line text, mean word confidence and tallest word, from image_to_data's per-word rows."""
    grouped: dict[tuple, list[tuple[str, float, int]]] = {}
    rows = zip(data["text"], data["conf"], data["height"], data["block_num"], data["par_num"], data["line_num"],
               strict=True)
    for word, conf, height, *key in rows:
        if word.strip() and float(conf) >= 0:
            grouped.setdefault(tuple(key), []).append((word, float(conf), int(height)))
    return tuple(
        OcrLine(" ".join(w for w, _, _ in words), sum(c for _, c, _ in words) / len(words),
                max(h for _, _, h in words) / long_side)
        for words in grouped.values()
    )


def make_ocr_engine(name: str = "tesserocr", tessdata: str | None = None) -> OcrEngine:
    """An OcrEngine by name; "tesserocr" falls back to pytesseract, with a warning, if the C API won't initialise."""
    if name == "pytesseract":
        return PytesseractEngine(tessdata)
    if name != "tesserocr":
        raise ValueError(f"unknown OCR engine {name!r}; expected 'tesserocr' or 'pytesseract'")
    try:
        return TesserocrEngine(tessdata)
    except (ImportError, RuntimeError) as exc:
        log.warning("tesserocr unavailable (%s); falling back to pytesseract, which spawns a process per image", exc)
        return PytesseractEngine(tessdata)


# Long side for the first OCR pass. Tesseract's cost is roughly linear in pixels; on 48 generated phone photos
# 1280 read 43 titles at a median 69 ms, 1600 read 40 at 90 ms, and on 24 cover-sized images (1000x1500) 1280 still
# read every title and every small "ISBN ..." caption. Smaller inputs are left alone: upscaling adds time, not detail.
OCR_MAX_SIDE = 1280
# Long side for a second pass, run only when the first read little: a coarser scale rescues titles lost to a busy
# background or to letters too large for tesseract's single x-height guess (19 -> 22 of 24 photos, measured with a
# 1600 px first pass); clean covers never need it.
OCR_RETRY_SIDE = 800
_RETRY_BELOW_CONFIDENCE = 70.0
# Lines counted as read words when judging whether a photo read as nothing (stricter than CONFIDENT_LINE).
_WORD_LINE_CONFIDENCE = 60.0
# Fewer confident words than this after the upright passes: try the photo turned sideways.
_SIDEWAYS_BELOW_WORDS = 2
_RETRY_BELOW_WORDS = 3


def _prepared(gray: Image.Image, max_side: int) -> Image.Image:
    if max(gray.size) > max_side:
        # reduce() box-filters by an integer factor first: far cheaper than a full-quality resize from 12 MP.
        factor = int(max(gray.size) / max_side)
        if factor >= 2:
            gray = gray.reduce(factor)
        if max(gray.size) > max_side:
            s = max_side / max(gray.size)
            gray = gray.resize((round(gray.width * s), round(gray.height * s)), Image.Resampling.BILINEAR)
    # Dim or washed-out photos leave text at low contrast; stretching (1% tails clipped) helps tesseract's Otsu.
    return ImageOps.autocontrast(gray, cutoff=1)


def _read_little(result: OcrResult) -> bool:
    words = [w for w in result.text.split() if len(w) >= 3 and w.isalpha()]
    return (result.mean_confidence or 0.0) < _RETRY_BELOW_CONFIDENCE or len(words) < _RETRY_BELOW_WORDS


# A title is set larger than anything else on a cover. When no confident line stands this much taller than the
# smallest, the first pass probably dropped the title: tesseract's one x-height guess per page, pulled down by small
# print or a textured table, makes very large letters look like graphics. Measured on a generated cover photo:
# at 1280 px the title was lost and the author and ISBN lines read; at 800 px the title read.
_TITLE_STANDS_OUT = 1.4


def _missing_title(result: OcrResult) -> bool:
    heights = sorted(
        line.height for line in result.lines
        if line.confidence >= CONFIDENT_LINE and sum(c.isalpha() for c in line.text) >= 4
    )
    if len(heights) < 2:
        return True
    return heights[-1] < _TITLE_STANDS_OUT * heights[0]


def _confident_words(result: OcrResult) -> int:
    return sum(
        len(re.findall(r"[^\W\d_]{3,}", line.text)) for line in result.lines if line.confidence >= _WORD_LINE_CONFIDENCE
    )


def _merged(results: list[OcrResult], ms: float) -> OcrResult:
    confidences = [r.mean_confidence for r in results if r.mean_confidence is not None]
    return OcrResult(
        text="".join(r.text for r in results),
        mean_confidence=max(confidences) if confidences else None,
        ms=ms,
        lines=tuple(line for r in results for line in r.lines),
    )


def ocr_for_identification(engine: OcrEngine, image: Image.Image, max_side: int = OCR_MAX_SIDE) -> OcrResult:
    """OCR tuned for identifying a book from a photo or cover: grayscale, downscaled, contrast stretched, and read
    again at a coarser scale when the first pass found little or no line that looks like a title; a photo that
    still reads as nothing is tried turned a quarter each way (a book shot sideways, with no EXIF orientation).
    Texts and lines of all passes are concatenated; ms covers all."""
    start = time.perf_counter()
    first_image = _prepared(_gray(image), max_side)
    results = [engine.read_text(first_image)]
    if (_read_little(results[0]) or _missing_title(results[0])) and max(first_image.size) > OCR_RETRY_SIDE:
        results.append(engine.read_text(_prepared(first_image, OCR_RETRY_SIDE)))
    if sum(map(_confident_words, results)) < _SIDEWAYS_BELOW_WORDS:
        turned = [engine.read_text(first_image.rotate(angle, expand=True)) for angle in (90, 270)]
        best = max(turned, key=_confident_words)
        if _confident_words(best) > sum(map(_confident_words, results)):
            results.append(best)
    return _merged(results, (time.perf_counter() - start) * 1000)
