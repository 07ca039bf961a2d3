"""Text from cover photos through one OcrEngine interface: PP-OCR scene text (rapidocr), or tesseract (tesserocr
in-process, pytesseract as a subprocess)."""

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
    "RapidOcrEngine",
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
    """One recognised text line: its text, the engine's confidence (0-100), its height relative to the image's
    long side (so lines read at different scales compare; the tallest confident line is usually the title), and
    its box: four (x, y) corners as fractions of the image's width and height, clockwise from the line's top left
    (empty when the engine gives none), and whether it lies on the book rather than the desk around it."""

    text: str
    confidence: float
    height: float
    box: tuple[tuple[float, float], ...] = ()
    on_cover: bool | None = None  # inside the book's outline (media.rectify), None when no outline was found


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


# Long side the PP-OCR text detector works at. Detection's cost grows with pixels; lines are then cut out of the
# image handed in, so small text keeps its pixels for recognition. See bench/identify.py for the measurements.
DET_SIDE = 640
# Recognition costs about the same per line, and a blurb paragraph or a sheet of paper on the desk has dozens of
# lines. Titles and authors are the large text: only lines at least this share of the tallest line's height are
# read, at most MAX_LINES of them, tallest first. (A back cover's printed ISBN is small, but its barcode is read
# first, and its caption is read as well whenever the cover's own text is of a size with it.)
PROMINENT_SHARE = 0.22
MAX_LINES = 14
# A line read with less confidence than this is read again with its colours inverted, and the better kept.
_REREAD_BELOW = 0.8


class RapidOcrEngine(OcrEngine):
    """PP-OCR (rapidocr on onnxruntime): a text detector finds line quadrilaterals at any angle, an angle classifier
    turns upside-down lines, a recogniser reads each line. Reads light-on-dark and scene text that tesseract, made
    for pages, loses. The models ship inside the rapidocr wheel: nothing is downloaded at run time."""

    name = "rapidocr"

    def __init__(self, *, det_side: int = DET_SIDE, threads: int = 1, max_lines: int = MAX_LINES,
                 prominent_share: float = PROMINENT_SHARE) -> None:
        import numpy as np
        from rapidocr import RapidOCR

        # One onnxruntime thread per engine: the pipeline runs an engine per worker thread, and more intra-op
        # threads than cores only makes them wait for each other.
        self._ocr = RapidOCR(params={
            "Global.log_level": "error",
            "Global.max_side_len": 4096,
            "Global.use_cls": False,
            "Global.use_rec": False,
            "Det.limit_type": "max",
            "Det.limit_side_len": det_side,
            # One line per recognition call: a batch pads every line to the widest one's width, so a short author
            # line costs as much as the longest title; alone, each costs its own width.
            "Rec.rec_batch_num": 1,
            "EngineConfig.onnxruntime.intra_op_num_threads": threads,
            "EngineConfig.onnxruntime.inter_op_num_threads": 1,
            # onnxruntime's memory arena reuses each run's buffers instead of allocating them anew (rapidocr turns
            # it off): OCR per photo 505 -> 459 ms and 494 -> 471 ms in two paired runs, ~16 MB more resident.
            "EngineConfig.onnxruntime.enable_cpu_mem_arena": True,
        })
        self.max_lines = max_lines
        self.prominent_share = prominent_share
        self.det_side = det_side
        self._ocr(np.zeros((32, 32, 3), np.uint8))  # loads the detector now, so its scale can be changed per call
        self._lock = threading.Lock()

    def _detect(self, bgr, window: tuple[int, int, int, int] | None, side: int) -> list:
        """Text line boxes (4x2 float arrays, in `bgr`'s pixels) in all of `bgr` with the detector at `side` px,
        or in `window` of it at the window's own side (the frame's density, _WINDOW_MIN_SIDE..det_side)."""
        import numpy as np

        detector = getattr(self._ocr, "text_det", None)
        offset = np.zeros(2, np.float32)
        if window is not None:
            left, top, right, bottom = window
            frame_side = max(bgr.shape[:2])
            side = max(_WINDOW_MIN_SIDE, round(self.det_side * max(right - left, bottom - top) / frame_side))
            side = min(side, self.det_side)
            bgr = np.ascontiguousarray(bgr[top:bottom, left:right])
            offset = np.array([left, top], np.float32)
        if detector is not None:
            detector.limit_side_len = side
        try:
            det = self._ocr(bgr)
        finally:
            if detector is not None:
                detector.limit_side_len = self.det_side
        if getattr(det, "boxes", None) is None:
            return []
        return [np.asarray(b, np.float32) + offset for b in det.boxes]

    def read_text(self, image: Image.Image, focus=None, small_text: bool = False) -> OcrResult:
        """`focus`, optional, has `contains(x, y)` in fractions of the image (media.rectify.CoverQuad): lines inside
        it are read first, so a desk full of print cannot crowd the book's own lines out of MAX_LINES."""
        import numpy as np
        from rapidocr.utils.process_img import get_rotate_crop_image

        rgb = image.convert("RGB") if image.mode != "RGB" else image
        bgr = np.ascontiguousarray(np.asarray(rgb)[:, :, ::-1])  # the models were trained on OpenCV's BGR
        start = time.perf_counter()
        with self._lock:  # the rapidocr object keeps per-call settings
            boxes = None
            window = None if small_text else _focus_window(focus, rgb.size)
            if window is not None:
                boxes = self._detect(bgr, window, self.det_side)
                if len(boxes) < _WINDOW_MIN_LINES:
                    boxes = None  # too little text on the outline: perhaps not the book's; look at the whole frame
            if boxes is None:
                # Small print (a printed ISBN under the bars) needs the detector at full scale: ~2x the time.
                boxes = self._detect(bgr, None, side=max(rgb.size) if small_text else self.det_side)
            heights = [_short_side(b) for b in boxes]
            rank = heights
            if focus is not None and boxes:
                w, h = rgb.size
                rank = [hh * (2.0 if focus.contains(float(b[:, 0].mean()) / w, float(b[:, 1].mean()) / h) else 1.0)
                        for hh, b in zip(heights, boxes, strict=True)]
            # small_text: an unknown barcode ISBN must be checked against the printed one, which is small print.
            chosen = _prominent(rank, 0.05 if small_text else self.prominent_share,
                                2 * self.max_lines if small_text else self.max_lines)
            lines: list[OcrLine] = []
            if chosen:
                crops = [get_rotate_crop_image(bgr, boxes[i].copy()) for i in chosen]
                turned, cls = self._ocr.cls_and_rotate(crops)
                upside_down = sum(str(label) == "180" for label, _ in (cls.cls_res or ())) * 2 > len(crops)
                rec = self._ocr.recognize_txt(list(turned))
                texts, scores = list(rec.txts), [float(v) for v in rec.scores]
                weak = [k for k, v in enumerate(scores) if v < _REREAD_BELOW]
                if weak:
                    again = self._ocr.recognize_txt([255 - np.asarray(turned[k]) for k in weak])
                    for k, text, score in zip(weak, again.txts, again.scores, strict=True):
                        if float(score) > scores[k]:
                            texts[k], scores[k] = text, float(score)
                w, h = rgb.size
                long_side = max(w, h)
                for i, text, score in sorted(zip(chosen, texts, scores, strict=True)):
                    text = " ".join(str(text).split())
                    if text and score >= 0.5:
                        box = tuple((round(float(x) / w, 4), round(float(y) / h, 4)) for x, y in boxes[i])
                        lines.append(OcrLine(text, round(score * 100, 1), heights[i] / long_side, box))
                if upside_down:
                    lines.reverse()  # most lines were turned: the photo is upside down, so read bottom to top
        ms = (time.perf_counter() - start) * 1000
        if not lines:
            return OcrResult(text="", mean_confidence=None, ms=ms, lines=())
        text = "".join(f"{line.text}\n" for line in lines)
        mean = sum(line.confidence for line in lines) / len(lines)
        return OcrResult(text=text, mean_confidence=round(mean, 1), ms=ms, lines=tuple(lines))


# The detector is the dearest model (~310 ms at 640x480 on one core). On the book's outline (media.rectify's quad)
# it looks only at the book, at the frame's pixel density or better (never under _WINDOW_MIN_SIDE px): a cover
# filling most of the frame costs a third as much, a small one is seen larger than in the whole frame.
_WINDOW_MARGIN = 0.06
_WINDOW_MIN_SIDE = 400
_WINDOW_MIN_LINES = 2
_WINDOW_MAX_SHARE = 0.8  # an outline nearly the whole frame saves nothing
# How book-like the outline must look. Measured on 90 front covers (seeds 9000-9003, 0-1): every outline scoring
# 0.14 or more held the title's lines; below it they were often a sheet of paper on the desk or a shape.
_WINDOW_MIN_SCORE = 0.14


def _focus_window(focus, size: tuple[int, int]) -> tuple[int, int, int, int] | None:
    """The pixel box (left, top, right, bottom) around `focus`'s corners grown by _WINDOW_MARGIN, or None."""
    if focus is None or not getattr(focus, "corners", None) or getattr(focus, "score", 0.0) < _WINDOW_MIN_SCORE:
        return None
    w, h = size
    xs, ys = [x for x, _ in focus.corners], [y for _, y in focus.corners]
    mx, my = _WINDOW_MARGIN * (max(xs) - min(xs)), _WINDOW_MARGIN * (max(ys) - min(ys))
    left, right = max(0.0, min(xs) - mx), min(1.0, max(xs) + mx)
    top, bottom = max(0.0, min(ys) - my), min(1.0, max(ys) + my)
    if (right - left) * (bottom - top) > _WINDOW_MAX_SHARE:
        return None
    return round(left * w), round(top * h), round(right * w), round(bottom * h)


def _short_side(box) -> float:
    """A text line's height: the mean of its box's two shorter opposite sides (a sideways line is tall and thin)."""
    import numpy as np

    a = (np.linalg.norm(box[0] - box[3]) + np.linalg.norm(box[1] - box[2])) / 2
    b = (np.linalg.norm(box[0] - box[1]) + np.linalg.norm(box[2] - box[3])) / 2
    return float(min(a, b))


def _prominent(heights: list[float], share: float, limit: int) -> list[int]:
    """Indices (in reading order) of the tallest lines: at least `share` of the tallest, `limit` at most."""
    if not heights:
        return []
    tallest = max(heights)
    order = sorted(range(len(heights)), key=lambda i: -heights[i])
    return sorted(i for i in order[:limit] if heights[i] >= share * tallest)


def make_ocr_engine(name: str = "rapidocr", tessdata: str | None = None) -> OcrEngine:
    """An OcrEngine by name; "tesserocr" falls back to pytesseract, with a warning, if the C API won't initialise."""
    if name == "rapidocr":
        return RapidOcrEngine()
    if name == "pytesseract":
        return PytesseractEngine(tessdata)
    if name != "tesserocr":
        raise ValueError(f"unknown OCR engine {name!r}; expected 'rapidocr', 'tesserocr' or 'pytesseract'")
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


# Long side of the image PP-OCR cuts its lines from: small text on a cover at 30% of the frame keeps enough pixels.
SCENE_TEXT_SIDE = 1600


def _prepared(gray: Image.Image, max_side: int, *, stretch: bool = True) -> Image.Image:
    if max(gray.size) > max_side:
        # reduce() box-filters by an integer factor first: far cheaper than a full-quality resize from 12 MP.
        factor = int(max(gray.size) / max_side)
        if factor >= 2:
            gray = gray.reduce(factor)
        if max(gray.size) > max_side:
            s = max_side / max(gray.size)
            gray = gray.resize((round(gray.width * s), round(gray.height * s)), Image.Resampling.BILINEAR)
    # Dim or washed-out photos leave text at low contrast; stretching (1% tails clipped) helps tesseract's Otsu.
    return ImageOps.autocontrast(gray, cutoff=1) if stretch else gray


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


def ocr_for_identification(engine: OcrEngine, image: Image.Image, max_side: int = OCR_MAX_SIDE,
                           focus=None, small_text: bool = False) -> OcrResult:
    """OCR tuned for identifying a book from a photo or cover: grayscale, downscaled, contrast stretched, and read
    again at a coarser scale when the first pass found little or no line that looks like a title; a photo that
    still reads as nothing is tried turned a quarter each way (a book shot sideways, with no EXIF orientation).
    Texts and lines of all passes are concatenated; ms covers all."""
    start = time.perf_counter()
    if isinstance(engine, RapidOcrEngine):
        # The detector sees DET_SIDE px whatever it is handed; recognition crops keep up to SCENE_TEXT_SIDE.
        result = engine.read_text(_prepared(_gray(image), SCENE_TEXT_SIDE, stretch=False), focus=focus,
                                  small_text=small_text)
        return OcrResult(result.text, result.mean_confidence, (time.perf_counter() - start) * 1000, result.lines)
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
