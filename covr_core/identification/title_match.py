"""Find the catalog books whose title and author best explain the prominent text of a cover photo.

The input is the OCR lines of a photo, each with its height (a share of the photo's long side) and confidence; plain
text also works (every line then counts as equally large). Two stages:

1. **Candidates** (Postgres full text on the GIN index of catalog.book.search_tsv; no table scan). Words of the
   lines, largest lines first, are cut into lexemes: words under 3 characters, stop words, cover boilerplate
   ("bestseller", "novel", ...) and OCR junk (letters mixed with digits, no vowel, long numbers) are dropped, digits
   inside words are also read as the letters they resemble ("SPR1NG"), and reference lines (below) are left out. An
   OR tsquery of those words takes the CANDIDATES_PER_QUERY best books by ts_rank_cd. When no candidate scores
   ENOUGH, a second OR query of prefixes (`word:*`, the first 4 letters of words of 5+ letters, and of the word after
   a run-together leading "the"/"and") adds books whose words OCR misread or ran together ("SHADOWISLAND").
   Queries are built inside Postgres from an array parameter with quote_literal, so OCR text never becomes SQL.

2. **Explaining the text** (rapidfuzz, on accent-free lower-case text with punctuation removed). Each OCR word has
   a prominence: its line's height over the tallest line's. A candidate is scored by how much of that text it
   explains, title first, author second:
   - title coverage: each content word of the title matched to its most similar OCR word (indel ratio, or found
     inside a line with its spaces removed), weighted by word length and by the prominence of the word it matched:
     a title is the large text, so a title word found only in small print counts for less. Missing title words
     lower it. Best over the title as stored, without its series note, and its main part before a colon (x0.9).
   - order: how well the title appears, in order, in the text read top to bottom (partial_ratio), so "The Glass
     Garden" and "Garden of Glass" part ways although they share their words.
   - author coverage: the same over each author's name (initials dropped, surname counted twice), best author;
     NO_AUTHOR_SCORE when the catalog has none.
   - unexplained large text: of the words on lines at least LARGE_LINE as tall as the tallest, the share (by
     length x prominence) that neither the title nor the author explains. "DUNE MESSIAH" leaves MESSIAH for Dune
     to explain; "DUNE" leaves nothing for Dune and lacks MESSIAH for Dune Messiah, so each wins its own cover.
   score = TITLE_WEIGHT*coverage + ORDER_WEIGHT*order + AUTHOR_WEIGHT*author - UNEXPLAINED_PENALTY*unexplained,
   clamped to 0..1.

   Reference lines name other books: "from the author of X", "by the bestselling author of X", "sequel to X",
   "praise for X", quotations and their attributions ("... — The Guardian"). Their words (and those of the next line
   when the reference line ends in "of") explain nothing and need no explaining, so they cannot pull the match to X.
"""

from __future__ import annotations

import math
import re
import unicodedata
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import psycopg
from psycopg.rows import dict_row
from rapidfuzz import fuzz, process

from covr_core.catalog.books import fold, strip_series

__all__ = ["TitleCandidate", "match_title", "reference_lines"]

TITLE_WEIGHT = 0.55
ORDER_WEIGHT = 0.15
AUTHOR_WEIGHT = 0.30
UNEXPLAINED_PENALTY = 0.40
NO_AUTHOR_SCORE = 0.5
# A line this tall relative to the tallest is large text: it must be explained (titles, authors, big series names).
LARGE_LINE = 0.5
# OCR lines under this confidence (0-100) are mostly background read as text: ignored.
MIN_LINE_CONFIDENCE = 50.0
TOKEN_FLOOR = 0.7  # one wrong letter in a 6-letter word still counts (ratio 0.83), two do not (0.67)
ENOUGH = 0.6
CANDIDATES_PER_QUERY = 50
MAX_QUERY_TERMS = 24  # a back-cover blurb adds words that only widen the ranked set
MAX_PREFIX_TERMS = 12

# Short function words in the languages most covers are in: they match half the catalog and identify nothing.
_STOP_WORDS = frozenset(
    "the and for with from into over that this are was were not but you your his her its our their who what when "
    "all any can has had him how may one out she than then them they which will about after "
    "des les une und der die das den dem ein eine von zum zur del los las por con una pour avec sur dans".split()
)
# Words printed on covers that are not the title or author. Left out of the candidate query and of the unexplained
# text; title coverage still sees them, so a title that does contain one of them loses nothing.
_COVER_BOILERPLATE = frozenset(
    """novel novels bestseller bestselling bestsellers edition anniversary international national author authors
    award awards winning winner copies million sold praise introduction foreword afterword translated
    illustrated classic classics paperback hardcover unabridged times york sunday review reviews prize book books
    now major motion picture series stunning brilliant trilogy saga mystery""".split()
)
_WORD = re.compile(r"[^\W_]+")
# A line that names another book, or quotes a reviewer: its words say nothing about this cover's title.
_REFERENCE = re.compile(
    r"\b(author|writer|creator)s? of\b|\bsequel to\b|\bcompanion to\b|\balso by\b|\bpraise for\b"
    r"|\bfollow[- ]?up to\b|\bfrom the (bestselling )?(author|writer)\b"
)
_QUOTE = re.compile(r"^[\s\"'\u201c\u201d\u2018\u2019\u00ab\u00bb]|[\"\u201c\u201d\u00ab\u00bb]|^\s*[-\u2013\u2014~]")


@dataclass(frozen=True)
class TitleCandidate:
    """A catalog book that may be the one on the cover: its combined score, the parts of it, and the copies of it
    already in the network (for choosing between editions)."""

    book_id: uuid.UUID
    title: str
    authors: list[str]
    isbn13: str | None
    score: float
    title_score: float
    author_score: float
    order_score: float = 0.0
    unexplained: float = 0.0
    missing_title_words: tuple[str, ...] = ()
    copies: int = 0

    def explain(self) -> dict:
        """The score's parts, for the evidence an operator reads."""
        return {
            "book_id": str(self.book_id), "title": self.title, "authors": self.authors, "isbn13": self.isbn13,
            "score": self.score, "title_coverage": self.title_score, "author_coverage": self.author_score,
            "title_order": self.order_score, "unexplained_large_text": self.unexplained,
            "missing_title_words": list(self.missing_title_words), "copies_in_network": self.copies,
        }


@dataclass(frozen=True)
class _Line:
    words: list[str]
    prominence: float
    reference: bool
    raw: str = ""  # as read: the candidate query needs its accents (the catalog's tsvector keeps them)
    angle: float | None = None  # direction of the baseline in degrees (0-180), None without a box


# Text off the book (papers on the desk, a newspaper) counts as this much smaller than it is: it can still help
# when the outline was wrong, but it cannot outweigh the cover's own large text.
OFF_COVER = 0.45


# Lines whose baselines differ by more than this are not on one surface (keystone bends a cover's lines by less).
SAME_SURFACE_DEGREES = 7.0


def _angle(box) -> float | None:
    if not box or len(box) < 2:
        return None
    (x0, y0), (x1, y1) = box[0], box[1]
    if abs(x1 - x0) + abs(y1 - y0) < 1e-6:
        return None
    return math.degrees(math.atan2(y1 - y0, x1 - x0)) % 180


def _as_lines(ocr) -> list[tuple[str, float, float, float | None]]:
    """(text, height, confidence, angle) per line, from OCR lines or plain text (every line equally tall)."""
    if isinstance(ocr, str):
        return [(line, 1.0, 100.0, None) for line in ocr.splitlines() if line.strip()]
    return [
        (line.text, float(line.height) * (OFF_COVER if getattr(line, "on_cover", None) is False else 1.0),
         float(line.confidence), _angle(getattr(line, "box", ())))
        for line in ocr if line.text.strip()
    ]


def _angle_gap(a: float | None, b: float | None) -> float:
    if a is None or b is None:
        return 0.0
    d = abs(a - b) % 180
    return min(d, 180 - d)


def reference_lines(texts: Sequence[str]) -> list[bool]:
    """For each line, whether it names or quotes something other than this book (see the module docstring)."""
    flags = []
    carry = False
    for raw in texts:
        folded = fold(raw)
        is_ref = bool(_REFERENCE.search(folded)) or bool(_QUOTE.search(raw))
        flags.append(is_ref or carry)
        # "By the bestselling author of" / "Garden of Glass": a reference wrapped onto the next line.
        carry = is_ref and bool(re.search(r"\b(of|to|for|by)$", folded))
    return flags


def match_title(
    conn: psycopg.Connection, ocr, *, limit: int = 5, min_score: float = 0.0
) -> list[TitleCandidate]:
    """The best `limit` catalog books for a cover's OCR (lines with heights, or plain text), best first, each scoring
    at least `min_score`."""
    text = _Text.of(_as_lines(ocr))
    terms = query_terms("\n".join(line.raw for line in text.by_prominence()))
    if not terms:
        return []
    found: dict[uuid.UUID, TitleCandidate] = {}
    for stage_terms, prefix in ((terms, False), (prefix_terms(terms), True)):
        if found and max(c.score for c in found.values()) >= ENOUGH:
            break
        if stage_terms:
            for c in _rerank(_candidates(conn, stage_terms, prefix=prefix), text):
                found.setdefault(c.book_id, c)
    ranked = sorted(found.values(), key=lambda c: (-c.score, c.title, str(c.book_id)))
    ranked = [c for c in ranked if c.score >= min_score][:limit]
    return _with_copies(conn, ranked)


# --- candidate queries ---------------------------------------------------------------------------------------------

# quote_literal makes every term a quoted lexeme, so nothing in it is read as a tsquery operator. The join on @@
# lets the planner use the GIN index (book_search_idx); only matching rows are ranked.
CANDIDATES_SQL = """
with q as (
    select to_tsquery('simple', string_agg(quote_literal(term) || %(suffix)s, ' | ')) as query
    from unnest(%(terms)s::text[]) as term
)
select b.book_id, b.title, b.authors, b.isbn13, ts_rank_cd(b.search_tsv, q.query) as rank
from q
join catalog.book as b on b.search_tsv @@ q.query
order by rank desc, b.book_id
limit %(limit)s
"""


def _candidates(conn: psycopg.Connection, terms: list[str], *, prefix: bool) -> list[dict]:
    params = {"terms": terms, "suffix": ":*" if prefix else "", "limit": CANDIDATES_PER_QUERY}
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(CANDIDATES_SQL, params).fetchall()


def _with_copies(conn: psycopg.Connection, ranked: list[TitleCandidate]) -> list[TitleCandidate]:
    """The candidates with the number of live copies of each in the network (editions are told apart by it)."""
    if not ranked:
        return ranked
    with conn.cursor() as cur:
        rows = cur.execute(
            "select book_id, count(*) from catalog.copy where book_id = any(%s) "
            "and status not in ('withdrawn', 'lost') group by book_id",
            ([c.book_id for c in ranked],),
        ).fetchall()
    counts = {}
    for row in rows:
        book_id, n = row.values() if isinstance(row, dict) else row
        counts[book_id] = int(n)
    return [replace(c, copies=counts.get(c.book_id, 0)) for c in ranked]


def _is_junk(word: str) -> bool:
    if len(word) < 3 or word in _STOP_WORDS or word in _COVER_BOILERPLATE:
        return True
    if any(c.isdigit() for c in word):
        # "1984", "451" are titles; "l1ke" is a misread and 9780306406157 is the barcode.
        return not (word.isdigit() and len(word) <= 4)
    if word.isascii() and not re.search(r"[aeiouy]", word):
        return True
    return re.search(r"(.)\1\1", word) is not None  # "lll", "iii": rules and borders read as letters


# Digits OCR reads in place of letters ("SPR1NG", "CARS0N"); 1 is I or l, so it gives two readings.
_DIGIT_AS_LETTER = {"0": "o", "3": "e", "4": "a", "5": "s", "7": "t", "8": "b"}


def _readings(word: str) -> list[str]:
    """The word, and for a letter word with a few digits in it, the word with those digits read as letters."""
    digits = sum(c.isdigit() for c in word)
    if not digits or digits == len(word) or digits * 2 > len(word):
        return [word]
    out = [word]
    for one in ("i", "l"):
        reading = "".join(_DIGIT_AS_LETTER.get(c, one if c == "1" else c) for c in word)
        if not any(c.isdigit() for c in reading) and reading not in out:
            out.append(reading)
    return out


def query_terms(ocr_text: str) -> list[str]:
    """Lexemes for the candidate query, in reading order: the word as written (lower case), without accents, and
    with misread digits turned back into letters."""
    terms: list[str] = []
    for word in _WORD.findall(ocr_text.lower()):
        for reading in _readings(word):
            for variant in (reading, _strip_accents(reading)):
                if not _is_junk(variant) and variant not in terms:
                    terms.append(variant)
    return terms[:MAX_QUERY_TERMS]


def prefix_terms(terms: list[str]) -> list[str]:
    """4-letter prefixes of the longer words; a word that looks like several run together also gives the next one."""
    prefixes: list[str] = []
    for term in sorted(terms, key=len, reverse=True):
        if len(term) < 5 or term.isdigit():
            continue
        starts = [term]
        for stop in ("the", "and"):
            if len(term) >= 9 and term.startswith(stop) and len(term) - len(stop) >= 5:
                starts.append(term[len(stop) :])
        for start in starts:
            p = start[:4]
            if p not in prefixes and p not in _STOP_WORDS:
                prefixes.append(p)
    return prefixes[:MAX_PREFIX_TERMS]


def _strip_accents(word: str) -> str:
    return "".join(c for c in unicodedata.normalize("NFKD", word) if not unicodedata.combining(c))


# --- explaining the text ------------------------------------------------------------------------------------------


@dataclass
class _Text:
    lines: list[_Line]
    tokens: list[str] = field(default_factory=list)  # words of non-reference lines, digits read as letters
    prominence: list[float] = field(default_factory=list)  # per token
    token_line: list[int] = field(default_factory=list)  # per token, its index in lines
    compacts: list[tuple[str, float, int]] = field(default_factory=list)  # per line: words run together, prominence, index
    ordered: str = ""  # non-reference text top to bottom
    sized: bool = True  # whether lines have real heights (plain text does not: which text is large is unknown)

    @classmethod
    def of(cls, raw: list[tuple[str, float, float, float | None]]) -> _Text:
        raw = [r for r in raw if r[2] >= MIN_LINE_CONFIDENCE]
        tallest = max((r[1] for r in raw), default=1.0) or 1.0
        refs = reference_lines([r[0] for r in raw])
        lines = []
        for (t, h, _, angle), ref in zip(raw, refs, strict=True):
            words = [_readings(w)[-1] for w in fold(t).split()]
            if words:
                lines.append(_Line(words, min(1.0, h / tallest), ref, t, angle))
        text = cls(lines, sized=len({r[1] for r in raw}) > 1)
        for index, line in enumerate(lines):
            if line.reference:
                continue
            for w in line.words:
                for r in _readings(w):
                    text.tokens.append(r)
                    text.prominence.append(line.prominence)
                    text.token_line.append(index)
            text.compacts.append(("".join(line.words), line.prominence, index))
        text.ordered = " ".join(" ".join(line.words) for line in lines if not line.reference)
        return text

    def by_prominence(self) -> list[_Line]:
        return sorted((ln for ln in self.lines if not ln.reference), key=lambda ln: -ln.prominence)


def _is_content(word: str) -> bool:
    return len(word) >= 3 and word not in _STOP_WORDS and word not in _COVER_BOILERPLATE


def _weighted(sim: float, prominence: float) -> float:
    return sim * (0.6 + 0.4 * prominence)


def _word_match(word: str, text: _Text) -> tuple[float, float, int]:
    """(similarity, prominence where found, line index) of a book's word in the text, preferring a large match to a
    close small one; (0, 0, -1) when absent."""
    found: list[tuple[float, float, int]] = []
    if text.tokens:
        for _, score, i in process.extract(word, text.tokens, scorer=fuzz.ratio, limit=5,
                                           score_cutoff=TOKEN_FLOOR * 100):
            found.append((score / 100, text.prominence[i], text.token_line[i]))
    if len(word) >= 4:
        # Words OCR ran together ("SHADOWISLAND"): the word inside a line with its spaces removed.
        for compact, prominence, index in text.compacts:
            if len(compact) <= len(word) or compact == word:
                continue
            inside = 100.0 if word in compact else (fuzz.partial_ratio(word, compact) if len(word) >= 5 else 0.0)
            if inside >= 90:
                found.append((0.9 * inside / 100, prominence, index))
    return max(found, key=lambda f: _weighted(f[0], f[1]), default=(0.0, 0.0, -1))


def _coverage(weights: dict[str, float], text: _Text, *, by_prominence: bool) -> tuple[float, list[str], int]:
    """(coverage, missing words, index of the line holding the heaviest word found; -1 if none)."""
    total = sum(weights.values())
    if not total:
        return 0.0, [], -1
    got, missing, anchor, anchor_weight = 0.0, [], -1, 0.0
    for word, w in weights.items():
        sim, where, index = _word_match(word, text)
        repeats = round(w / len(word)) if word else 1
        if repeats > 1 and sim:
            # "Children of Children" needs the word twice on the cover; one CHILDREN explains one of them.
            seen = sum(1 for t in text.tokens if fuzz.ratio(word, t) >= TOKEN_FLOOR * 100)
            sim *= min(1.0, seen / repeats)
        if sim == 0.0:
            missing.append(word)
        elif w * where > anchor_weight:
            anchor, anchor_weight = index, w * where
        got += w * (_weighted(sim, where) if by_prominence else sim)
    return got / total, missing, anchor


def _sequence(phrase: str, text: _Text) -> float:
    ordered = text.ordered
    if not phrase or not ordered:
        return 0.0
    # Padding with spaces makes a short title match whole words ("it" scores low against "written").
    score = fuzz.partial_ratio(f" {phrase} ", f" {ordered} ") / 100
    compact = phrase.replace(" ", "")
    if len(compact) >= 4:
        score = max(score, 0.95 * fuzz.partial_ratio(compact, ordered.replace(" ", "")) / 100)
    # partial_ratio slides the shorter string along the longer one; with a short OCR text that would measure how
    # much of the OCR is in the title, not how much of the title is on the cover.
    if len(phrase) > len(ordered):
        score *= len(ordered) / len(phrase)
    return score


def _word_order(words: list[str], text: _Text) -> float:
    """Share of consecutive title words found in the same order in the text ("glass garden" is not "garden ...
    glass"); 1.0 for a one-word title."""
    positions = []
    for word in words:
        hits = [i for i, t in enumerate(text.tokens) if fuzz.ratio(word, t) >= 80]
        if hits:
            positions.append(hits[0])
    if len(positions) < 2:
        return 1.0 if len(words) < 2 or positions else 0.0
    pairs = list(zip(positions, positions[1:]))
    return sum(a < b for a, b in pairs) / (len(words) - 1)


def _explains(token: str, words: list[str]) -> int:
    """Characters of an OCR word that the book's words explain (a run-together word, in part)."""
    if process.extractOne(token, words, scorer=fuzz.ratio, score_cutoff=TOKEN_FLOOR * 100) is not None:
        return len(token)
    return min(len(token), sum(len(w) for w in set(words) if len(w) >= 3 and w in token))


def _unexplained(words: list[str], text: _Text, anchor: int) -> float:
    """Share (by length x prominence) of the large text's content words that `words` leave unexplained. Only
    lines on the surface of the title's own line (`anchor`) count: a sheet of paper lying askew is not the cover."""
    total = unexplained = 0.0
    surface = text.lines[anchor].angle if anchor >= 0 else None
    for line in text.lines:
        if line.reference or line.prominence < LARGE_LINE:
            continue
        if _angle_gap(line.angle, surface) > SAME_SURFACE_DEGREES:
            continue
        for token in line.words:
            if not _is_content(token) or token.isdigit():
                continue
            weight = len(token) * line.prominence
            total += weight
            unexplained += weight * (1 - _explains(token, words) / len(token))
    return unexplained / total if total else 0.0


def _title_words(phrase: str) -> dict[str, float]:
    words = phrase.split()
    content = [w for w in words if len(w) > 2 and w not in _STOP_WORDS] or words
    weights: dict[str, float] = {}
    for w in content:
        weights[w] = weights.get(w, 0.0) + len(w)
    return weights


def _title_parts(title: str, text: _Text) -> tuple[float, float, list[str], int]:
    """(coverage, order, missing words, anchor line) for the best reading of the title."""
    variants = {fold(title): 1.0, fold(strip_series(title)): 1.0}
    if ":" in title:
        variants.setdefault(fold(title.split(":", 1)[0]), 0.9)
    best = (0.0, 0.0, [], -1)
    for phrase, factor in variants.items():
        if not phrase:
            continue
        coverage, missing, anchor = _coverage(_title_words(phrase), text, by_prominence=True)
        order = 0.5 * _sequence(phrase, text) + 0.5 * _word_order(list(_title_words(phrase)), text)
        value = (factor * coverage, factor * order, missing, anchor)
        if value[0] + value[1] > best[0] + best[1]:
            best = value
    return best


def _author_score(authors: list[str], text: _Text) -> float:
    if not authors:
        return NO_AUTHOR_SCORE
    best = 0.0
    for name in authors[:4]:
        words = [w for w in fold(name).split() if len(w) > 1]  # initials say too little
        if not words:
            continue
        # "Le Guin, Ursula K." names its surname first.
        surname_part = fold(name.split(",", 1)[0]).split() if "," in name else words[-1:]
        weights: dict[str, float] = {}
        for w in words:
            weights[w] = weights.get(w, 0.0) + len(w) * (2 if w in surname_part else 1)
        best = max(best, _coverage(weights, text, by_prominence=False)[0])
    return best


def _rerank(rows: list[dict], text: _Text) -> list[TitleCandidate]:
    out = []
    for row in rows:
        coverage, order, missing, anchor = _title_parts(row["title"], text)
        author = _author_score(row["authors"], text)
        words = fold(" ".join([strip_series(row["title"]), *row["authors"]])).split()
        unexplained = _unexplained(words, text, anchor)
        # Without heights every line looks large, publisher names too: the penalty then counts half.
        penalty = UNEXPLAINED_PENALTY * (1.0 if text.sized else 0.5)
        score = TITLE_WEIGHT * coverage + ORDER_WEIGHT * order + AUTHOR_WEIGHT * author - penalty * unexplained
        out.append(
            TitleCandidate(
                book_id=row["book_id"],
                title=row["title"],
                authors=list(row["authors"]),
                isbn13=row["isbn13"],
                score=round(max(0.0, min(1.0, score)), 4),
                title_score=round(coverage, 4),
                author_score=round(author, 4),
                order_score=round(order, 4),
                unexplained=round(unexplained, 4),
                missing_title_words=tuple(missing),
            )
        )
    return out
