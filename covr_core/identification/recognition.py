"""One photo, read and identified: barcode first, scene-text OCR only when it is needed, then the catalog decides.

The order, cheapest and surest first:
1. the EAN-13 barcode (zxing-cpp). A Bookland ISBN that the catalog knows short-circuits everything after it.
2. scene-text OCR (PP-OCR through rapidocr by default) of the oriented photo: lines with boxes, heights and
   confidences; printed ISBNs are taken from its text.
3. the catalog: a printed ISBN it knows, else the title match (title_match.py), else cover similarity.

`read_photo` does the pixel work (no database), `identify_reading` the catalog work; the Dagster asset, bench and
tests call both, so what they measure is what ingest runs.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import psycopg
from PIL import Image

from covr_core.identification.barcode import read_isbn_barcode
from covr_core.identification.identify import Identification, choose_identification
from covr_core.identification.ocr import OcrEngine, OcrLine, OcrResult, make_ocr_engine, ocr_for_identification
from covr_core.identification.title_match import match_title
from covr_core.media.rectify import CoverQuad, find_cover
from covr_core.shared.isbn import find_isbns_in_text

__all__ = ["Reading", "identify_reading", "known_books", "lines_evidence", "read_photo"]

# Lines kept in the evidence: enough for every title, author and ISBN line of a cover; a blurb's tail is dropped.
EVIDENCE_LINES = 24


@dataclass
class Reading:
    """What the recognisers read from one photo, before the catalog is consulted."""

    barcode_isbn: str | None = None
    barcode: dict = field(default_factory=dict)
    ocr: OcrResult | None = None
    ocr_skipped: str | None = None
    cover: CoverQuad | None = None
    timings_ms: dict = field(default_factory=dict)

    @property
    def ocr_text(self) -> str:
        return self.ocr.text if self.ocr else ""

    @property
    def ocr_lines(self) -> tuple[OcrLine, ...]:
        return self.ocr.lines if self.ocr else ()

    def evidence(self) -> dict[str, Any]:
        ocr: dict[str, Any]
        if self.ocr_skipped:
            ocr = {"skipped": self.ocr_skipped}
        elif self.ocr is None:
            ocr = {"skipped": "not run"}
        else:
            ocr = {"mean_confidence": self.ocr.mean_confidence, "lines_read": len(self.ocr.lines),
                   "lines": lines_evidence(self.ocr.lines),
                   "cover_outline": self.cover.evidence() if self.cover else None}
        return {"barcode": self.barcode, "ocr": ocr, "timings_ms": self.timings_ms}


def lines_evidence(lines: Sequence[OcrLine]) -> list[dict]:
    """OCR lines as the evidence shows them: text, confidence (0-100), height (share of the long side), box."""
    return [
        {"text": line.text[:120], "confidence": round(line.confidence, 1), "height": round(line.height, 4),
         "box": [list(p) for p in line.box], "on_cover": line.on_cover}
        for line in list(lines)[:EVIDENCE_LINES]
    ]


def read_photo(image: Image.Image, engine: OcrEngine, *, is_known: Callable[[str], bool],
               full_resolution: Callable[[], Image.Image] | None = None) -> Reading:
    """Barcode, then OCR unless the barcode's ISBN is one the catalog knows (`is_known`).

    `image` is the oriented photo at recognition scale (load_for_recognition: ~2000 px long side), any mode.
    `full_resolution`, when `image` is a reduced decode, returns the full one for a small barcode (read_isbn_barcode).
    """
    reading = Reading()
    gray = image if image.mode == "L" else image.convert("L")
    t0 = time.perf_counter()
    result = read_isbn_barcode(gray, full_resolution=full_resolution)
    reading.barcode_isbn = result.isbn13
    reading.barcode = {"isbn13": result.isbn13, "codes": result.codes, "attempts": len(result.attempts),
                       "read_by": result.attempts[-1]["name"] if result.isbn13 else None,
                       "barcode_like_share": result.gate_share, "bar_like_regions": result.regions}
    t1 = time.perf_counter()
    # OCR is the dearest stage; a barcode the catalog knows leaves it nothing to add. An unknown ISBN still needs
    # it, for a provisional title.
    if reading.barcode_isbn and is_known(reading.barcode_isbn):
        reading.ocr_skipped = "barcode ISBN found in the catalog"
    else:
        reading.cover = find_cover(image)
        t1b = time.perf_counter()
        # A barcode the catalog does not know may be a misread: read the small print too, for the printed ISBN.
        reading.ocr = ocr_for_identification(engine, gray, focus=reading.cover,
                                             small_text=reading.barcode_isbn is not None)
        if reading.ocr.lines:
            reading.ocr = _mark_on_cover(reading.ocr, reading.cover)
            reading.ocr = _printed_isbns_by_tesseract(gray, reading.ocr, is_known)
        reading.timings_ms["cover"] = round((t1b - t1) * 1e3, 1)
    t2 = time.perf_counter()
    reading.timings_ms.update({"barcode": round((t1 - t0) * 1e3, 1),
                               "ocr": round((t2 - t1) * 1e3 - reading.timings_ms.get("cover", 0.0), 1)})
    return reading


_ISBN_LINE = re.compile(r"isbn|97[89][\d\s-]{6,}", re.IGNORECASE)
_tesseract = threading.local()


def _printed_isbns_by_tesseract(gray: Image.Image, result: OcrResult, is_known) -> OcrResult:
    """The cascade's second engine: when a line looks like a printed ISBN but gives none the catalog knows, read
    that line again with tesseract, which reads printed digits more reliably than PP-OCR (a PP-OCR misread of two
    digits can still pass the checksum). The lines it reads are added, marked `engine: tesseract` in the text."""
    candidates = [line for line in result.lines if line.box and _ISBN_LINE.search(line.text)]
    if not candidates or any(is_known(i) for i in find_isbns_in_text(result.text)):
        return result
    engine = getattr(_tesseract, "engine", None)
    if engine is None:
        try:
            engine = _tesseract.engine = make_ocr_engine("tesserocr")
        except (OSError, RuntimeError, ImportError, FileNotFoundError):
            return result
    extra = []
    w, h = gray.size
    for line in candidates[:3]:
        xs, ys = [p[0] * w for p in line.box], [p[1] * h for p in line.box]
        pad = (max(ys) - min(ys)) * 0.4
        crop = gray.crop((int(max(0, min(xs) - pad)), int(max(0, min(ys) - pad)),
                          int(min(w, max(xs) + pad)), int(min(h, max(ys) + pad))))
        if crop.height < 48:  # tesseract likes a 30+ px x-height
            s = 48 / max(1, crop.height)
            crop = crop.resize((max(1, round(crop.width * s)), 48), Image.Resampling.BICUBIC)
        text = " ".join(engine.read_text(crop).text.split())
        if text:
            extra.append(replace(line, text=text, on_cover=line.on_cover))
    if not extra:
        return result
    return replace(result, text=result.text + "".join(f"{line.text}\n" for line in extra),
                   lines=result.lines + tuple(extra))


def _mark_on_cover(result: OcrResult, cover: CoverQuad | None) -> OcrResult:
    """Each line marked on or off the book; an outline that holds neither the tallest line nor two lines is not
    the book's (a shape on the cover, a sticker) and marks nothing."""
    if cover is None:
        return result
    inside = [cover.contains(*_centre(line)) if line.box else None for line in result.lines]
    tallest = max(range(len(result.lines)), key=lambda i: result.lines[i].height)
    if not inside[tallest] and sum(bool(v) for v in inside) < 2:
        return result
    lines = tuple(replace(line, on_cover=flag) for line, flag in zip(result.lines, inside, strict=True))
    return replace(result, lines=lines)


def _centre(line: OcrLine) -> tuple[float, float]:
    xs, ys = [p[0] for p in line.box], [p[1] for p in line.box]
    return sum(xs) / len(xs), sum(ys) / len(ys)


def known_books(conn: psycopg.Connection, isbns: Sequence[str]) -> dict[str, dict]:
    """Catalog books by ISBN-13: {isbn: {"book_id", "title", "authors"}}."""
    if not isbns:
        return {}
    with conn.cursor() as cur:
        rows = cur.execute(
            "select book_id, isbn13, title, authors from catalog.book where isbn13 = any(%s)", (list(isbns),)
        ).fetchall()
    out = {}
    for row in rows:
        book_id, isbn13, title, authors = row.values() if isinstance(row, dict) else row
        out[isbn13] = {"book_id": str(book_id), "title": title, "authors": authors}
    return out


def identify_reading(
    conn: psycopg.Connection,
    reading: Reading,
    *,
    lookup: Callable[[str], Any] | None = None,
    embedding_hits: Sequence[Any] = (),
    embedding_min_score: float | None = None,
) -> Identification:
    """The identification of one read photo, with its evidence: what was read, the candidates, why the winner won.

    `lookup(isbn)` asks a metadata provider (Open Library) about an ISBN the catalog lacks; it returns a record
    with `.title` and `.model_dump()`, or None.
    """
    ocr_isbns = find_isbns_in_text(reading.ocr_text)
    isbns = [i for i in [reading.barcode_isbn, *ocr_isbns] if i]
    known = known_books(conn, isbns)
    evidence: dict[str, Any] = {**reading.evidence(), "ocr_isbns": ocr_isbns}
    lead_isbn = reading.barcode_isbn or (ocr_isbns[0] if ocr_isbns else None)
    if lead_isbn and lead_isbn not in known and lookup is not None:
        record = lookup(lead_isbn)
        if record is not None:
            evidence["metadata"] = {"provider": "openlibrary", **record.model_dump()}
            known[lead_isbn] = {"book_id": None, "title": record.title}
    candidates = []
    if not reading.barcode_isbn and not any(i in known for i in ocr_isbns) and reading.ocr_lines:
        candidates = match_title(conn, reading.ocr_lines, limit=6)
        evidence["title_candidates"] = [c.explain() for c in candidates]
    kwargs = {} if embedding_min_score is None else {"embedding_min_score": embedding_min_score}
    return choose_identification(
        barcode_isbn=reading.barcode_isbn,
        ocr_isbns=ocr_isbns,
        books_by_isbn=known,
        title_candidates=candidates,
        embedding_hits=list(embedding_hits),
        ocr_text=reading.ocr_text,
        ocr_lines=reading.ocr_lines,
        evidence=evidence,
        **kwargs,
    )
