"""Book records: validation, reading catalog files (JSONL, CSV, Goodreads export), and upserting them into Postgres."""

from __future__ import annotations

import csv
import json
import os
import re
import unicodedata
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from psycopg.rows import dict_row
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from covr_core.isbn import is_valid_isbn10, is_valid_isbn13, normalize_isbn

__all__ = [
    "BookRecord",
    "ImportReport",
    "RowError",
    "find_book_by_isbn",
    "fold",
    "import_books",
    "normalize_language",
    "normalize_title",
    "read_catalog_file",
    "strip_series",
]

MIN_YEAR, MAX_YEAR = 1400, 2100

# Names people and Open Library (MARC codes) use for the languages most books are in. Anything else that already
# looks like a code passes through; anything else is dropped rather than guessed.
_LANGUAGE_NAMES = {
    "english": "en", "eng": "en",
    "french": "fr", "francais": "fr", "fre": "fr", "fra": "fr",
    "german": "de", "deutsch": "de", "ger": "de", "deu": "de",
    "spanish": "es", "espanol": "es", "spa": "es",
    "italian": "it", "italiano": "it", "ita": "it",
    "portuguese": "pt", "portugues": "pt", "por": "pt",
    "dutch": "nl", "nederlands": "nl", "dut": "nl", "nld": "nl",
    "russian": "ru", "rus": "ru",
    "polish": "pl", "polski": "pl", "pol": "pl",
    "swedish": "sv", "swe": "sv",
    "danish": "da", "dan": "da",
    "norwegian": "no", "nor": "no",
    "finnish": "fi", "fin": "fi",
    "japanese": "ja", "jpn": "ja",
    "chinese": "zh", "chi": "zh", "zho": "zh",
    "korean": "ko", "kor": "ko",
    "arabic": "ar", "ara": "ar",
    "greek": "el", "gre": "el", "ell": "el",
    "turkish": "tr", "tur": "tr",
    "czech": "cs", "cze": "cs", "ces": "cs",
    "hebrew": "he", "heb": "he",
    "latin": "la", "lat": "la",
}  # fmt: skip

# "Title (Series, #2)", "Title (Series #2.5)", "Title (Discworld, #1; Rincewind #1)": Goodreads' series suffix.
_SERIES_SUFFIX = re.compile(r"\s*\([^()]*#\s*\d[^()]*\)\s*$")
_LIST_SPLIT = re.compile(r"\s*[;|]\s*")


def strip_series(title: str) -> str:
    """The title without a trailing Goodreads-style series note such as " (The Expanse, #2)"."""
    stripped = _SERIES_SUFFIX.sub("", title)
    return stripped if stripped.strip() else title


def fold(text: str) -> str:
    """Lower case, accents removed, punctuation turned into spaces, whitespace collapsed: text for comparing."""
    decomposed = unicodedata.normalize("NFKD", text)
    bare = "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()
    return " ".join(re.sub(r"[^\w]|_", " ", bare).split())


def normalize_title(title: str) -> str:
    """The title as compared for duplicates: series note dropped, folded."""
    return fold(strip_series(title))


def _author_key(author: str) -> str:
    # Sorted tokens, so "Tolkien, J.R.R." and "J. R. R. Tolkien" are the same person.
    return " ".join(sorted(fold(author).split()))


def normalize_language(value: str | None) -> str | None:
    """A 2-3 letter lower-case code for a language name or code ("English", "eng", "en-US" -> "en"); else None."""
    if value is None:
        return None
    folded = fold(value)
    if not folded:
        return None
    if folded in _LANGUAGE_NAMES:
        return _LANGUAGE_NAMES[folded]
    primary = folded.split()[0]  # "en us" from "en-US" / "en_US"
    if primary in _LANGUAGE_NAMES:
        return _LANGUAGE_NAMES[primary]
    if re.fullmatch(r"[a-z]{2,3}", primary):
        return primary
    return None


def _clean_list(value: Any, *, what: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        items = _LIST_SPLIT.split(value)
    elif isinstance(value, list | tuple):
        items = value
    else:
        raise ValueError(f"{what} must be a list or a ';'-separated string, got {type(value).__name__}")
    out: list[str] = []
    seen: set[str] = set()
    for item in items:
        if not isinstance(item, str):
            raise ValueError(f"{what} entry {item!r} is not text")
        name = " ".join(item.split())
        if name and name.casefold() not in seen:
            seen.add(name.casefold())
            out.append(name)
    return out


def _isbn_problem(raw: str) -> str:
    """Why `raw` is not an ISBN, in words a member can act on."""
    compact = re.sub(r"(?i)^\s*isbn(?:-?1[03])?\s*:?", "", raw)
    compact = re.sub(r"[\s\-\u2010-\u2015]", "", compact)
    if re.fullmatch(r"\d{13}", compact):
        if is_valid_isbn13(compact):
            return f"ISBN {compact} is not a book number (an ISBN-13 starts with 978 or 979)"
        return f"ISBN {compact} has a bad checksum"
    if re.fullmatch(r"\d{9}[\dXx]", compact) and not is_valid_isbn10(compact.upper()):
        return f"ISBN {compact} has a bad checksum"
    return f"ISBN {raw.strip()!r} is not 10 or 13 digits"


class BookRecord(BaseModel):
    """One edition as a catalog file, Open Library or a person describes it; validated before it reaches the DB."""

    model_config = ConfigDict(extra="ignore")

    isbn13: str | None = None
    title: str
    authors: list[str] = []
    published_year: int | None = None
    language: str | None = None
    tags: list[str] = []

    @field_validator("isbn13", mode="before")
    @classmethod
    def _isbn(cls, value: Any) -> str | None:
        if value is None:
            return None
        if isinstance(value, int):
            value = str(value)
        if not isinstance(value, str):
            raise ValueError(f"ISBN {value!r} is not text")
        if not value.strip():
            return None
        isbn = normalize_isbn(value)
        if isbn is None:
            raise ValueError(_isbn_problem(value))
        return isbn

    @field_validator("title", mode="before")
    @classmethod
    def _title(cls, value: Any) -> str:
        if not isinstance(value, str) or not value.strip():
            raise ValueError(f"title {value!r} is empty; every book needs a title")
        return " ".join(value.split())

    @field_validator("authors", mode="before")
    @classmethod
    def _authors(cls, value: Any) -> list[str]:
        return _clean_list(value, what="authors")

    @field_validator("tags", mode="before")
    @classmethod
    def _tags(cls, value: Any) -> list[str]:
        return _clean_list(value, what="tags")

    @field_validator("published_year", mode="before")
    @classmethod
    def _year(cls, value: Any) -> int | None:
        if value is None or (isinstance(value, str) and not value.strip()):
            return None
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, str) and re.fullmatch(r"\s*\d{1,4}(\.0)?\s*", value):
            value = int(float(value))
        if not isinstance(value, int) or isinstance(value, bool):
            raise ValueError(f"published_year {value!r} is not a year")
        if not MIN_YEAR <= value <= MAX_YEAR:
            raise ValueError(f"published_year {value} is outside {MIN_YEAR}..{MAX_YEAR}")
        return value

    @field_validator("language", mode="before")
    @classmethod
    def _language(cls, value: Any) -> str | None:
        return normalize_language(value) if isinstance(value, str) else None


@dataclass(frozen=True)
class RowError:
    """A row of a catalog file that could not be used: its line in the file (1-based) and why."""

    line: int
    reason: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.reason}"


@dataclass
class ImportReport:
    """What import_books did. `skipped`: ISBN-less duplicates and manually curated books left alone."""

    inserted: int
    updated: int
    errors: list[RowError] = field(default_factory=list)
    skipped: int = 0


def _validation_reason(exc: ValidationError) -> str:
    reasons = []
    for err in exc.errors():
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] != "value_error":  # pydantic's own wording does not name the field
            where = ".".join(str(p) for p in err["loc"]) or "row"
            msg = f"{where} {err.get('input')!r}: {msg}" if "input" in err else f"{where}: {msg}"
        reasons.append(msg)
    return "; ".join(reasons)


def _record_or_error(line: int, data: dict[str, Any]) -> BookRecord | RowError:
    try:
        return BookRecord.model_validate(data)
    except ValidationError as exc:
        return RowError(line, _validation_reason(exc))


# --- reading files -------------------------------------------------------------------------------------------------

_GOODREADS_MARKERS = {"book id", "title", "author", "isbn13", "exclusive shelf"}
_GENERIC_COLUMNS = {
    "isbn13": "isbn13", "isbn": "isbn13", "isbn_13": "isbn13", "isbn-13": "isbn13",
    "title": "title",
    "authors": "authors", "author": "authors",
    "published_year": "published_year", "year": "published_year",
    "language": "language", "lang": "language",
    "tags": "tags",
}  # fmt: skip


def read_catalog_file(path: str | os.PathLike[str]) -> Iterator[BookRecord | RowError]:
    """Books from a JSONL file, a CSV with isbn13/title/authors/... headers, or a Goodreads library export.

    The format is detected from the content, not the file name. A row that cannot be used comes out as a RowError
    with its line number, and reading carries on; an unrecognisable file raises ValueError naming it.
    """
    path = Path(path)
    with path.open(encoding="utf-8-sig", newline="") as f:
        head = f.read(4096)
        f.seek(0)
        first = head.lstrip()[:1]
        if first == "{":
            yield from _read_jsonl(f)
            return
        if first == "[":
            raise ValueError(f"{path}: a JSON array is not supported; write one JSON object per line (JSONL)")
        if not first:
            return
        first_line = head.splitlines()[0] if head.splitlines() else ""
        delimiter = "\t" if first_line.count("\t") > first_line.count(",") else ","
        reader = csv.reader(f, delimiter=delimiter)
        header = [h.strip() for h in next(reader, [])]
        lowered = [h.lower() for h in header]
        if _GOODREADS_MARKERS <= set(lowered):
            yield from _read_rows(reader, lowered, _goodreads_row)
        elif "title" in lowered:
            yield from _read_rows(reader, lowered, _generic_row)
        else:
            raise ValueError(
                f"{path}: unrecognised catalog format; the header {header[:8]} has no 'title' column "
                f"(expected a CSV with isbn13,title,authors,..., a Goodreads export, or JSONL)"
            )


def _read_jsonl(lines: Iterable[str]) -> Iterator[BookRecord | RowError]:
    for line_no, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
        except json.JSONDecodeError as exc:
            yield RowError(line_no, f"not valid JSON ({exc.msg} at column {exc.colno})")
            continue
        if not isinstance(data, dict):
            yield RowError(line_no, f"expected a JSON object, got {type(data).__name__}")
            continue
        yield _record_or_error(line_no, data)


def _read_rows(reader, header: list[str], to_record) -> Iterator[BookRecord | RowError]:
    # reader.line_num counts physical lines, so a quoted cell with line breaks (a Goodreads review) keeps the
    # reported line numbers true to what an editor shows.
    last_line = reader.line_num
    for row in reader:
        start_line = last_line + 1
        last_line = reader.line_num
        if not any(cell.strip() for cell in row):
            continue
        cells = dict(zip(header, row, strict=False))
        try:
            data = to_record(cells)
        except ValueError as exc:
            yield RowError(start_line, str(exc))
            continue
        yield _record_or_error(start_line, data)


def _generic_row(cells: dict[str, str]) -> dict[str, Any]:
    data: dict[str, Any] = {}
    for column, value in cells.items():
        target = _GENERIC_COLUMNS.get(column)
        if target and not data.get(target):  # "isbn" and "isbn13" both present: the filled one wins
            data[target] = value.strip()
    return data


def _excel_text(cell: str | None) -> str:
    """Goodreads writes ISBNs as Excel formulas (="0306406152", ="") so leading zeros survive a spreadsheet."""
    value = (cell or "").strip()
    if value.startswith("="):
        value = value[1:]
    return value.strip().strip('"').strip()


def _goodreads_row(cells: dict[str, str]) -> dict[str, Any]:
    isbn13 = _excel_text(cells.get("isbn13"))
    isbn10 = _excel_text(cells.get("isbn"))
    authors = [cells.get("author") or ""]
    authors += (cells.get("additional authors") or "").split(",")
    year = (cells.get("year published") or "").strip() or (cells.get("original publication year") or "").strip()
    shelves = (cells.get("bookshelves") or "").split(",")
    return {
        "isbn13": isbn13 or isbn10,
        "title": cells.get("title") or "",
        "authors": [a for a in authors if a.strip()],
        "published_year": year,
        "tags": [s for s in shelves if s.strip()],
    }


# --- writing -------------------------------------------------------------------------------------------------------

_UPSERT_BY_ISBN = """
insert into catalog.book as b (isbn13, title, authors, published_year, language, tags, metadata_source)
values (%(isbn13)s, %(title)s, %(authors)s, %(published_year)s, %(language)s, %(tags)s, 'catalog')
on conflict (isbn13) do update set
    title = excluded.title,
    authors = case when cardinality(excluded.authors) > 0 then excluded.authors else b.authors end,
    published_year = coalesce(excluded.published_year, b.published_year),
    language = coalesce(excluded.language, b.language),
    -- Tags from every source are kept, in first-seen order.
    tags = array(select t from unnest(b.tags || excluded.tags) with ordinality as u(t, n) group by t order by min(n)),
    metadata_source = 'catalog',
    updated_at = now()
-- A person's manual edits outrank a bulk file.
where b.metadata_source <> 'manual'
-- xmax is 0 only on a freshly inserted row version: the standard way to tell insert from update in one statement.
returning (xmax = 0) as inserted
"""

_INSERT_WITHOUT_ISBN = """
insert into catalog.book (title, authors, published_year, language, tags, metadata_source)
values (%(title)s, %(authors)s, %(published_year)s, %(language)s, %(tags)s, 'catalog')
"""


def import_books(conn: psycopg.Connection, records: Iterable[BookRecord | RowError]) -> ImportReport:
    """Upsert records into catalog.book by ISBN-13 in one transaction; RowErrors pass straight into the report.

    A record without an ISBN is inserted only if no book with the same title (series note and punctuation ignored)
    and first author exists, so re-importing a file does not duplicate them.
    """
    report = ImportReport(inserted=0, updated=0)
    with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
        for record in records:
            if isinstance(record, RowError):
                report.errors.append(record)
                continue
            params = record.model_dump()
            if record.isbn13 is not None:
                row = cur.execute(_UPSERT_BY_ISBN, params).fetchone()
                if row is None:
                    report.skipped += 1
                elif row["inserted"]:
                    report.inserted += 1
                else:
                    report.updated += 1
            elif _insert_unless_known(cur, record):
                report.inserted += 1
            else:
                report.skipped += 1
    return report


def _insert_unless_known(cur: psycopg.Cursor, record: BookRecord) -> bool:
    title_key = normalize_title(record.title)
    author_key = _author_key(record.authors[0]) if record.authors else ""
    # Nothing in the schema makes ISBN-less books unique, so concurrent imports of the same book serialise here.
    cur.execute("select pg_advisory_xact_lock(hashtextextended(%s, 0))", (f"catalog.book:{title_key}:{author_key}",))
    # The full-text index narrows the search to books containing every title word; Python decides equality.
    candidates = cur.execute(
        "select title, authors from catalog.book where search_tsv @@ plainto_tsquery('simple', %s)",
        (strip_series(record.title),),
    ).fetchall()
    for c in candidates:
        if normalize_title(c["title"]) == title_key and (_author_key(c["authors"][0]) if c["authors"] else "") == (
            author_key
        ):
            return False
    cur.execute(_INSERT_WITHOUT_ISBN, record.model_dump())
    return True


_BOOK_COLUMNS = (
    "book_id, isbn13, title, authors, published_year, language, tags, metadata_source, needs_review, "
    "created_at, updated_at"
)


def find_book_by_isbn(conn: psycopg.Connection, isbn13: str) -> dict[str, Any] | None:
    """The catalog.book row for an ISBN (13 or 10 digits, hyphens allowed), or None; ValueError if not an ISBN."""
    isbn = normalize_isbn(isbn13)
    if isbn is None:
        raise ValueError(_isbn_problem(isbn13))
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(f"select {_BOOK_COLUMNS} from catalog.book where isbn13 = %s", (isbn,)).fetchone()
