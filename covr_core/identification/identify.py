"""Which book a photo shows: combine barcode, OCR text, title match and cover similarity into one answer."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

# Confidence of each kind of evidence. A checksum-valid EAN-13 that starts 978/979 is near certain;
# an ISBN read from printed text passed a checksum too but OCR can confuse a digit into another valid one.
BARCODE_CONFIDENCE = 0.99
OCR_ISBN_CONFIDENCE = 0.90
# A title match (title_match.py: 0.55 title coverage + 0.15 order + 0.30 author - 0.40 unexplained large text) must
# be good in absolute terms and clearly ahead of the best candidate that is another book. A cover showing only its
# title, read perfectly, scores about 0.70: a near-complete title alone is accepted too.
TITLE_MATCH_MIN_SCORE = 0.62
TITLE_ONLY_MIN_TITLE_SCORE = 0.9
TITLE_ONLY_MIN_SCORE = 0.55
TITLE_MATCH_MIN_MARGIN = 0.06
# Editions of one book (same title and author) score alike from the cover's text; within this they are a tie.
EDITION_TIE = 0.02
# A pick between tied editions is a guess between printings of the same text: its confidence is lowered by this.
EDITION_TIE_FACTOR = 0.85
EMBEDDING_IDENTIFY_MIN_SCORE = 0.90


@dataclass(frozen=True)
class Identification:
    """The answer for one image: a book (or none), how sure, by which source, and everything seen."""

    book_id: str | None
    isbn13: str | None
    title: str | None
    confidence: float
    source: str | None  # isbn | ocr | embedding, None when nothing identified a book
    evidence: dict[str, Any] = field(default_factory=dict)

    @property
    def identified(self) -> bool:
        return self.source is not None


def choose_identification(
    *,
    barcode_isbn: str | None,
    ocr_isbns: list[str],
    books_by_isbn: dict[str, dict],
    title_candidates: list[Any],
    embedding_hits: list[Any],
    ocr_text: str,
    evidence: dict[str, Any],
    embedding_min_score: float = EMBEDDING_IDENTIFY_MIN_SCORE,
    ocr_lines=(),
) -> Identification:
    """Pick the strongest identification; evidence of every source is kept whichever wins.

    `books_by_isbn` maps an ISBN to its catalog (or provider) metadata: {"book_id": .. or None, "title": ..}.
    Title candidates carry `.book_id`, `.title`, `.isbn13`, `.score`; embedding hits `.book_id`, `.score`.
    """
    if barcode_isbn:
        # The printed number and the bars under it are one ISBN. When they disagree, the bars were
        # misread (a blurred EAN-13 can decode to another checksum-valid code) or the print was: the
        # one the catalog knows is the likelier truth.
        printed_known = [i for i in ocr_isbns if i != barcode_isbn and books_by_isbn.get(i, {}).get("book_id")]
        if barcode_isbn not in books_by_isbn and printed_known:
            evidence["barcode_disagrees_with_print"] = barcode_isbn
            return _by_isbn(printed_known[0], OCR_ISBN_CONFIDENCE, "ocr_text", books_by_isbn, ocr_text, ocr_lines,
                            evidence)
        return _by_isbn(barcode_isbn, BARCODE_CONFIDENCE, "barcode", books_by_isbn, ocr_text, ocr_lines, evidence)

    # Of several printed ISBNs (a book can list its other editions), prefer one the catalog or a provider knows.
    confirmed = [isbn for isbn in ocr_isbns if isbn in books_by_isbn]
    if confirmed:
        return _by_isbn(confirmed[0], OCR_ISBN_CONFIDENCE, "ocr_text", books_by_isbn, ocr_text, ocr_lines, evidence)

    # An unconfirmed printed ISBN can be a misread that still passes the checksum (two wrong digits do,
    # one time in ten): a convincing title match of a catalogued book outranks it.
    by_title = _by_title(title_candidates, evidence)
    if by_title is not None:
        if ocr_isbns:
            evidence["unconfirmed_ocr_isbns"] = ocr_isbns
        evidence["why"] = evidence["title_match"]["why"]
        return by_title
    if ocr_isbns:
        return _by_isbn(ocr_isbns[0], OCR_ISBN_CONFIDENCE, "ocr_text", books_by_isbn, ocr_text, ocr_lines, evidence)

    if embedding_hits:
        best_hit = embedding_hits[0]
        evidence["embedding_best_score"] = round(float(best_hit.score), 4)
        if best_hit.book_id and best_hit.score >= embedding_min_score:
            evidence["why"] = f"cover similar to a known copy's photo (cosine {best_hit.score:.3f})"
            return Identification(
                str(best_hit.book_id), None, None, round(float(best_hit.score), 4), "embedding", evidence
            )

    evidence["why"] = evidence.get("title_match", {}).get("why") or "no barcode, ISBN, title or similar cover found"
    return Identification(None, None, None, 0.0, None, evidence)


def _edition_key(candidate) -> tuple[str, str]:
    authors = getattr(candidate, "authors", None) or []
    return _normalise(candidate.title), " ".join(sorted(_normalise(" ".join(authors)).split()))


def _by_title(title_candidates, evidence) -> Identification | None:
    if not title_candidates:
        return None
    best = title_candidates[0]
    key = _edition_key(best)
    editions = [c for c in title_candidates if _edition_key(c) == key and best.score - c.score <= EDITION_TIE]
    others = [c for c in title_candidates if _edition_key(c) != key]
    runner_up = others[0] if others else None
    margin = best.score - (runner_up.score if runner_up else 0.0)
    report: dict[str, Any] = {
        "best_score": round(best.score, 4),
        "runner_up": None if runner_up is None else {"title": runner_up.title, "score": round(runner_up.score, 4)},
        "runner_up_score": round(runner_up.score, 4) if runner_up else 0.0,
        "margin": round(margin, 4),
    }
    evidence["title_match"] = report
    title_only = getattr(best, "title_score", 0.0) >= TITLE_ONLY_MIN_TITLE_SCORE and best.score >= TITLE_ONLY_MIN_SCORE
    if not (best.score >= TITLE_MATCH_MIN_SCORE or title_only):
        report["why"] = (f"no book explains the text well enough: best {best.title!r} scored {best.score:.2f}, "
                         f"under {TITLE_MATCH_MIN_SCORE}")
        return None
    if margin < TITLE_MATCH_MIN_MARGIN:
        report["why"] = (f"{best.title!r} ({best.score:.2f}) and {runner_up.title!r} ({runner_up.score:.2f}) "
                         f"explain the text about equally (margin under {TITLE_MATCH_MIN_MARGIN})")
        return None
    confidence = best.score
    chosen = best
    why = (f"{best.title!r} explains the most of the large text (title coverage {getattr(best, 'title_score', 0):.2f}, "
           f"author {getattr(best, 'author_score', 0):.2f}, unexplained {getattr(best, 'unexplained', 0):.2f})")
    why += f", {margin:.2f} ahead of {runner_up.title!r}" if runner_up else ", with no other book close"
    if len({c.book_id for c in editions}) > 1:
        # Nothing on a cover tells printings of one text apart; only a barcode or ISBN could. Pick one the same
        # way every time, preferring the edition members already hold, and say how sure that is.
        chosen = min(editions, key=lambda c: (-getattr(c, "copies", 0), c.isbn13 or "~", str(c.book_id)))
        confidence = best.score * EDITION_TIE_FACTOR
        report["ambiguous_editions"] = True
        report["editions"] = [
            {"book_id": str(c.book_id), "isbn13": c.isbn13, "copies_in_network": getattr(c, "copies", 0)}
            for c in editions
        ]
        held = getattr(chosen, "copies", 0)
        why += (f"; {len(editions)} editions fit equally, chose {chosen.isbn13 or chosen.book_id} "
                + (f"(already in the network: {held} copies)" if held else "(none in the network: lowest ISBN)")
                + f", confidence lowered x{EDITION_TIE_FACTOR}")
    report["why"] = why
    return Identification(str(chosen.book_id), chosen.isbn13, chosen.title, round(confidence, 4), "ocr", evidence)


def _by_isbn(isbn, confidence, read_from, books_by_isbn, ocr_text, ocr_lines, evidence) -> Identification:
    evidence["isbn_from"] = read_from
    known = books_by_isbn.get(isbn) or {}
    where = "the catalog" if known.get("book_id") else ("a metadata provider" if known else "nowhere yet")
    evidence["why"] = f"ISBN {isbn} read from the {read_from.replace('_', ' ')}, known to {where}"
    if read_from == "barcode":
        evidence["why"] += "; OCR skipped" if evidence.get("ocr", {}).get("skipped") else ""
    title = known.get("title") or provisional_title(ocr_text, ocr_lines)
    return Identification(known.get("book_id"), isbn, title, confidence, "isbn", evidence)


def _normalise(text: str | None) -> str:
    return " ".join(re.findall(r"[a-z0-9]+", (text or "").lower()))


_NOT_A_TITLE = re.compile(r"isbn|\d{5,}|price|\$|€|£|www\.|http|\.com|barcode", re.IGNORECASE)
TITLE_LINE_MIN_CONFIDENCE = 60.0
# Lines of a title share its type size; a subtitle or an author line is markedly smaller.
TITLE_LINE_HEIGHT_RATIO = 0.75


def _wordlike(line: str) -> bool:
    words = re.findall(r"[^\W\d_]{2,}", line)
    return len(line) >= 3 and bool(words) and sum(map(len, words)) >= 4 and not _NOT_A_TITLE.search(line)


def provisional_title(ocr_text: str, lines=()) -> str | None:
    """A best guess at the title from OCR, for books known only by ISBN; such books are marked for review.

    With line geometry (`OcrLine`s), the title is the tallest confident line, joined with the lines
    next to it in the same type size, since titles wrap. Without it, the first word-like line:
    tesseract reads top to bottom and covers put the title near the top.
    """
    good = [line for line in lines if line.confidence >= TITLE_LINE_MIN_CONFIDENCE and _wordlike(line.text)]
    if good:
        tallest = max(range(len(good)), key=lambda i: good[i].height)
        floor = good[tallest].height * TITLE_LINE_HEIGHT_RATIO
        start = tallest
        while start > 0 and good[start - 1].height >= floor and good[start - 1].text != good[tallest].text:
            start -= 1
        end = tallest + 1
        while end < len(good) and good[end].height >= floor and good[end].text != good[start].text:
            end += 1
        return " ".join(" ".join(line.text.split()) for line in good[start:end])[:200]
    for raw in (ocr_text or "").splitlines():
        line = " ".join(raw.split())
        if _wordlike(line):
            return line[:200]
    return None
