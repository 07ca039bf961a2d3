"""Find the catalog books whose title and author best explain the noisy OCR text of a cover photo.

Two stages:

1. **Candidates** (Postgres full text on the GIN index of catalog.book.search_tsv; no table scan). The OCR text is
   cut into words; words under 3 characters, stop words, cover boilerplate ("bestseller", "novel", ...) and OCR junk
   (letters mixed with digits, no vowel, long numbers) are dropped, and digits inside words are also read as the
   letters they resemble ("SPR1NG"). An OR tsquery of those words takes the CANDIDATES_PER_QUERY best books by
   ts_rank_cd, so title words (weight A) count more than author words (B). When no candidate scores ENOUGH after
   re-ranking, a second OR query of prefixes (`word:*`, the first 4 letters of words of 5+ letters, and of the
   word after a run-together leading "the"/"and") adds books whose words OCR misread past their first letters.
   Queries are built inside Postgres from an array parameter with quote_literal, so OCR text never becomes SQL or
   tsquery syntax. Cost grows with the number of matching rows (each is ranked): about 50 ms for a typical cover
   against 100k books, a few hundred ms for a cover made only of very common words.

2. **Re-ranking** (rapidfuzz, on accent-free lower-case text with punctuation removed).
   - token coverage: each content word of the title is matched to its most similar OCR word (indel ratio; or, for
     words of 5+ letters, found inside the OCR text with its spaces removed, for lines OCR ran together), weighted
     by word length; similarities under TOKEN_FLOOR count as absent.
   - sequence: how well the whole title appears, in order, somewhere in the OCR text (partial_ratio, with and
     without spaces), scaled down when the OCR text is shorter than the title.
   - title_score = mean of coverage and sequence, best over the title as stored, without its series note
     ("(Series, #2)"), and its main part before a colon (x0.9: a cover may omit the subtitle); then multiplied by
     0.75 + 0.25 * line completeness: of the OCR lines holding title or author words, the share of their words the
     title and author explain. A cover gives its title lines of their own, so "THE ROAD LESS TRAVELED" is weaker
     evidence for "The Road" than "THE / ROAD", and "DUNE MESSIAH" prefers "Dune Messiah" to "Dune".
   - author_score = the same token coverage over each author's name (initials dropped, surname counted twice),
     best author; 0.5 (neutral) when the catalog has no author for the book.
   - score = 0.65 * title_score + 0.35 * author_score, in 0..1. Extra lines on the cover cost nothing; a missing
     author costs at most 0.35, so a wrong book needs both a similar title and a similar author to come close.
"""

from __future__ import annotations

import re
import unicodedata
import uuid
from dataclasses import dataclass

import psycopg
from psycopg.rows import dict_row
from rapidfuzz import fuzz, process

from covr_core.catalog.books import fold, strip_series

__all__ = ["TitleCandidate", "match_title"]

TITLE_WEIGHT = 0.65
AUTHOR_WEIGHT = 0.35
NO_AUTHOR_SCORE = 0.5
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
# Words printed on covers that are not the title or author. Left out of the candidate query and of line completeness;
# title coverage and sequence still see them, so a title that does contain one of them loses nothing.
_COVER_BOILERPLATE = frozenset(
    """novel novels bestseller bestselling bestsellers edition anniversary international national author authors
    award awards winning winner copies million sold praise introduction foreword afterword translated
    illustrated classic classics paperback hardcover unabridged times york sunday review reviews prize book books
    now major motion picture series stunning brilliant""".split()
)
_WORD = re.compile(r"[^\W_]+")


@dataclass(frozen=True)
class TitleCandidate:
    """A catalog book that may be the one on the cover, with its combined score and the two parts of it."""

    book_id: uuid.UUID
    title: str
    authors: list[str]
    isbn13: str | None
    score: float
    title_score: float
    author_score: float


def match_title(
    conn: psycopg.Connection, ocr_text: str, *, limit: int = 5, min_score: float = 0.0
) -> list[TitleCandidate]:
    """The best `limit` catalog books for the OCR text of a cover, best first, each scoring at least `min_score`."""
    terms = query_terms(ocr_text)
    if not terms:
        return []
    ocr = _Ocr.of(ocr_text)
    found: dict[uuid.UUID, TitleCandidate] = {}
    for stage_terms, prefix in ((terms, False), (prefix_terms(terms), True)):
        if found and max(c.score for c in found.values()) >= ENOUGH:
            break
        if stage_terms:
            for c in _rerank(_candidates(conn, stage_terms, prefix=prefix), ocr):
                found.setdefault(c.book_id, c)
    ranked = sorted(found.values(), key=lambda c: (-c.score, c.title))
    return [c for c in ranked if c.score >= min_score][:limit]


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


# --- re-ranking ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Ocr:
    text: str
    tokens: list[str]
    compact: str
    lines: list[list[str]]  # per OCR line, the words that could be part of a title or a name

    @classmethod
    def of(cls, raw: str) -> _Ocr:
        text = fold(raw)
        tokens = [r for word in text.split() for r in _readings(word)]
        lines = [[_readings(w)[-1] for w in fold(line).split() if _is_content(w)] for line in raw.splitlines()]
        return cls(text=text, tokens=tokens, compact=text.replace(" ", ""), lines=[ln for ln in lines if ln])


def _is_content(word: str) -> bool:
    return len(word) >= 3 and word not in _STOP_WORDS and word not in _COVER_BOILERPLATE


def _word_similarity(word: str, ocr: _Ocr) -> float:
    best = process.extractOne(word, ocr.tokens, scorer=fuzz.ratio)
    score = best[1] / 100 if best else 0.0
    if len(word) >= 5:
        inside = fuzz.partial_ratio(word, ocr.compact)
        if inside >= 90:  # at most one wrong letter in ten: chance substrings of a long text do not get here
            score = max(score, 0.9 * inside / 100)
    return score if score >= TOKEN_FLOOR else 0.0


def _coverage(weights: dict[str, float], ocr: _Ocr) -> float:
    total = sum(weights.values())
    if not total:
        return 0.0
    return sum(w * _word_similarity(word, ocr) for word, w in weights.items()) / total


def _sequence(phrase: str, ocr: _Ocr) -> float:
    if not phrase or not ocr.text:
        return 0.0
    # Padding with spaces makes a short title match whole words ("it" scores low against "written").
    score = fuzz.partial_ratio(f" {phrase} ", f" {ocr.text} ") / 100
    compact = phrase.replace(" ", "")
    if len(compact) >= 4:
        score = max(score, 0.95 * fuzz.partial_ratio(compact, ocr.compact) / 100)
    # partial_ratio slides the shorter string along the longer one; with a short OCR text that would measure how
    # much of the OCR is in the title, not how much of the title is on the cover.
    if len(phrase) > len(ocr.text):
        score *= len(ocr.text) / len(phrase)
    return score


def _line_completeness(words: list[str], ocr: _Ocr) -> float:
    """Of the OCR lines the book's words appear on, the share of characters they explain (1.0 if none appear)."""
    touched = explained = 0
    for line in ocr.lines:
        credits = [_explained_chars(token, words) for token in line]
        if any(credits):
            touched += sum(len(token) for token in line)
            explained += sum(credits)
    return explained / touched if touched else 1.0


def _explained_chars(token: str, words: list[str]) -> int:
    if process.extractOne(token, words, scorer=fuzz.ratio, score_cutoff=TOKEN_FLOOR * 100) is not None:
        return len(token)
    # Words OCR ran together: "thelefthandof" is explained by the, left, hand, of.
    return min(len(token), sum(len(w) for w in set(words) if len(w) >= 2 and w in token))


def _title_words(phrase: str) -> dict[str, float]:
    words = phrase.split()
    content = [w for w in words if len(w) > 2 and w not in _STOP_WORDS] or words
    weights: dict[str, float] = {}
    for w in content:
        weights[w] = weights.get(w, 0.0) + len(w)
    return weights


def _title_score(title: str, authors: list[str], ocr: _Ocr) -> float:
    variants = {fold(title): 1.0, fold(strip_series(title)): 1.0}
    if ":" in title:
        variants.setdefault(fold(title.split(":", 1)[0]), 0.9)
    best = 0.0
    for phrase, factor in variants.items():
        if phrase:
            best = max(best, factor * 0.5 * (_coverage(_title_words(phrase), ocr) + _sequence(phrase, ocr)))
    words = fold(" ".join([title, *authors])).split()
    return best * (0.75 + 0.25 * _line_completeness(words, ocr))


def _author_score(authors: list[str], ocr: _Ocr) -> float:
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
        best = max(best, _coverage(weights, ocr))
    return best


def _rerank(rows: list[dict], ocr: _Ocr) -> list[TitleCandidate]:
    out = []
    for row in rows:
        title_score = _title_score(row["title"], row["authors"], ocr)
        author_score = _author_score(row["authors"], ocr)
        score = TITLE_WEIGHT * title_score + AUTHOR_WEIGHT * author_score
        out.append(
            TitleCandidate(
                book_id=row["book_id"],
                title=row["title"],
                authors=list(row["authors"]),
                isbn13=row["isbn13"],
                score=round(min(1.0, score), 4),
                title_score=round(title_score, 4),
                author_score=round(author_score, 4),
            )
        )
    return out
