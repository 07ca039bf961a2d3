"""Book records: validation, reading catalog files (JSONL, CSV, Goodreads export), and upserting them into Postgres."""

from __future__ import annotations

import codecs
import csv
import io
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
from pydantic import BaseModel, ConfigDict, PrivateAttr, ValidationError, field_validator

from covr_core.shared.events import BookUpdated
from covr_core.shared.isbn import is_valid_isbn10, is_valid_isbn13, normalize_isbn
from covr_core.shared.outbox import append_event

__all__ = [
    "BookRecord",
    "CatalogFile",
    "CatalogFileError",
    "create_book_from_identification",
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
# Field limits, checked before the database sees a row (README "Catalog import" lists them). Generous for real
# books (the longest titles in Open Library are around 400 characters); a cell over them is a mistake in the file,
# such as a whole review pasted into the title, and would otherwise bloat the search index or overflow a tsvector.
TITLE_MAX_CHARS = 500
AUTHOR_MAX_CHARS, MAX_AUTHORS = 200, 20
TAG_MAX_CHARS, MAX_TAGS = 64, 50

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


def _brief(value: Any, limit: int = 40) -> str:
    """repr(value), cut short: a message quotes the offending cell without echoing a megabyte of it."""
    if isinstance(value, str) and len(value) > limit:
        return repr(value[:limit] + "…")
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _refuse_control_characters(what: str, text: str) -> None:
    # PostgreSQL text cannot hold NUL, and other control characters in a title are debris from a binary export.
    for c in text:
        if unicodedata.category(c) == "Cc":
            raise ValueError(f"{what} {_brief(text)} contains the control character U+{ord(c):04X}")


def _clean_list(value: Any, *, what: str, one: str, max_items: int, max_chars: int) -> list[str]:
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
            raise ValueError(f"{what} entry {_brief(item)} is not text")
        name = " ".join(item.split())
        if len(name) > max_chars:
            raise ValueError(f"{one} {_brief(name)} is {len(name)} characters, over the {max_chars} limit")
        _refuse_control_characters(one, name)
        if name and name.casefold() not in seen:
            seen.add(name.casefold())
            out.append(name)
    if len(out) > max_items:
        raise ValueError(f"{len(out)} {what}, over the {max_items} limit")
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
    return f"ISBN {_brief(raw.strip())} is not 10 or 13 digits"


class BookRecord(BaseModel):
    """One edition as a catalog file, Open Library or a person describes it; validated before it reaches the DB.

    Limits: title up to TITLE_MAX_CHARS, up to MAX_AUTHORS authors of AUTHOR_MAX_CHARS each, up to MAX_TAGS tags of
    TAG_MAX_CHARS each (lengths after whitespace is collapsed); a record over any of them is refused, not truncated.
    """

    model_config = ConfigDict(extra="ignore")
    # The record's line in the file it was read from, for error messages; not a field, so never stored or compared.
    _line: int | None = PrivateAttr(default=None)

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
            raise ValueError(f"ISBN {_brief(value)} is not text")
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
            raise ValueError(f"title {_brief(value)} is empty; every book needs a title")
        title = " ".join(value.split())
        if len(title) > TITLE_MAX_CHARS:
            raise ValueError(f"title is {len(title)} characters, over the {TITLE_MAX_CHARS} limit")
        _refuse_control_characters("title", title)
        return title

    @field_validator("authors", mode="before")
    @classmethod
    def _authors(cls, value: Any) -> list[str]:
        return _clean_list(value, what="authors", one="author", max_items=MAX_AUTHORS, max_chars=AUTHOR_MAX_CHARS)

    @field_validator("tags", mode="before")
    @classmethod
    def _tags(cls, value: Any) -> list[str]:
        return _clean_list(value, what="tags", one="tag", max_items=MAX_TAGS, max_chars=TAG_MAX_CHARS)

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
            raise ValueError(f"published_year {_brief(value)} is not a year")
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
    """What import_books did with each record, every one counted once.

    `updated`: an existing ISBN the row changed; `unchanged`: an existing ISBN the row would not change (nothing is
    written, updated_at included). `skipped`: a book already in the catalog (an ISBN-less row matching one by title
    and first author) or curated by hand (metadata_source 'manual'), left alone whatever the row says. `errors`:
    rows refused, by the file, by the record's rules, as a duplicate ISBN, or by the database, in the order met.
    """

    inserted: int
    updated: int
    errors: list[RowError] = field(default_factory=list)
    skipped: int = 0
    unchanged: int = 0

    @property
    def refused(self) -> int:
        return len(self.errors)

    @property
    def rows(self) -> int:
        return self.inserted + self.updated + self.unchanged + self.skipped + self.refused


def _validation_reason(exc: ValidationError) -> str:
    reasons = []
    for err in exc.errors():
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] != "value_error":  # pydantic's own wording does not name the field
            where = ".".join(str(p) for p in err["loc"]) or "row"
            msg = f"{where} {_brief(err['input'])}: {msg}" if "input" in err else f"{where}: {msg}"
        reasons.append(msg)
    return "; ".join(reasons)


def _record_or_error(line: int, data: dict[str, Any]) -> BookRecord | RowError:
    try:
        record = BookRecord.model_validate(data)
    except ValidationError as exc:
        return RowError(line, _validation_reason(exc))
    record._line = line
    return record


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
# What a file that is not text usually turns out to be, so the refusal can say so.
_BINARY_SIGNATURES = {
    b"\x89PNG": "a PNG image",
    b"\xff\xd8\xff": "a JPEG image",
    b"GIF8": "a GIF image",
    b"%PDF": "a PDF document",
    b"PK\x03\x04": "a ZIP archive (an .xlsx or .ods spreadsheet is one: save it as CSV)",
    b"\x1f\x8b": "a gzip archive",
}
_UNICODE_BOMS = ((codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"),
                 (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"))  # fmt: skip


class CatalogFileError(ValueError):
    """A catalog file that cannot be read at all (binary, undecodable, unrecognised); the message names the file."""


@dataclass(frozen=True)
class CatalogFile:
    """A catalog file decoded to text, and how: `encoding` is the codec used, `encoding_note` why, if not UTF-8."""

    path: Path
    text: str
    encoding: str
    encoding_note: str | None = None

    @classmethod
    def open(cls, path: str | os.PathLike[str], *, encoding: str | None = None) -> CatalogFile:
        """Read and decode `path`: in `encoding` if given, else UTF-8 (BOM or not), else the detected encoding.

        Raises CatalogFileError for a binary file or one that is not valid text in the given encoding, and OSError
        when the file cannot be read.
        """
        path = Path(path)
        data = path.read_bytes()
        for signature, what in _BINARY_SIGNATURES.items():
            if data.startswith(signature):
                raise CatalogFileError(f"{path} is {what}, not a catalog file")
        if encoding is not None:
            text, name, note = _decode_as(path, data, encoding), _codec_name(encoding), None
        else:
            text, name, note = _decode_unknown(path, data)
        nul = text.find("\0")
        if nul >= 0:
            line = text.count("\n", 0, nul) + 1
            raise CatalogFileError(
                f"{path} is binary, not a catalog file (a NUL character on line {line}; "
                "UTF-16 text without a byte-order mark needs its encoding named)"
            )
        return cls(path, text.removeprefix("\ufeff"), name, note)

    def rows(self) -> Iterator[BookRecord | RowError]:
        """One BookRecord or RowError per non-blank data row, in file order, each knowing its line.

        The format is detected from the content, not the file name: JSONL, a JSON array of objects, a CSV (or tab
        separated) file with isbn13/title/authors/... headers, or a Goodreads library export. A row that cannot be
        used comes out as a RowError and reading carries on; an unrecognisable file raises CatalogFileError.
        """
        text = self.text
        first = text.lstrip()[:1]
        if not first:
            return
        if first in "[{":
            yield from _read_json(self.path, text)
            return
        # A cell may legitimately be long (a Goodreads review), and an absurd one must become a refused row rather
        # than a csv.Error that ends the file, so no cell may exceed the limit. The limit is process-wide: only
        # ever raise it.
        csv.field_size_limit(max(csv.field_size_limit(), len(text) + 1))
        f = io.StringIO(text, newline="")
        first_line = text.split("\n", 1)[0]
        delimiter = "\t" if first_line.count("\t") > first_line.count(",") else ","
        reader = csv.reader(f, delimiter=delimiter)
        header = [h.strip() for h in next(reader, [])]
        lowered = [h.lower() for h in header]
        if _GOODREADS_MARKERS <= set(lowered):
            yield from _read_rows(reader, lowered, _goodreads_row)
        elif "title" in lowered:
            yield from _read_rows(reader, lowered, _generic_row)
        else:
            shown = ", ".join(_brief(h, 30) for h in header[:8])
            raise CatalogFileError(
                f"{self.path}: unrecognised catalog format; the header [{shown}] has no 'title' column "
                f"(expected a CSV with isbn13,title,authors,..., a Goodreads export, JSONL or a JSON array)"
            )


def read_catalog_file(path: str | os.PathLike[str], *, encoding: str | None = None) -> Iterator[BookRecord | RowError]:
    """Books from a catalog file, one BookRecord or RowError per row: CatalogFile.open(path).rows()."""
    yield from CatalogFile.open(path, encoding=encoding).rows()


def _codec_name(encoding: str) -> str:
    name = codecs.lookup(encoding).name
    return "utf-8" if name == "utf-8-sig" else name


def _decode_as(path: Path, data: bytes, encoding: str) -> str:
    try:
        codec = codecs.lookup(encoding).name
    except LookupError:
        raise CatalogFileError(f"{path}: unknown encoding {encoding!r}") from None
    try:
        return data.decode("utf-8-sig" if codec == "utf-8" else codec)
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise CatalogFileError(
            f"{path} is not valid {codec}: byte 0x{data[exc.start]:02x} on line {line} cannot be decoded"
        ) from None


def _decode_unknown(path: Path, data: bytes) -> tuple[str, str, str | None]:
    """(text, encoding, note): UTF-8 when it is (the common case, BOM or not), else the most plausible legacy one."""
    for bom, codec in _UNICODE_BOMS:
        if data.startswith(bom):
            return _decode_as(path, data, codec), codec, None
    try:
        return data.decode("utf-8-sig"), "utf-8", None
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        not_utf8 = f"byte 0x{data[exc.start]:02x} on line {line} is not UTF-8"
    if b"\0" in data:
        # NUL bytes without a BOM: binary, or UTF-16 without one; refused by the caller either way.
        return data.decode("latin-1"), "latin-1", not_utf8
    detected = _detect_encoding(data)
    if detected is not None:
        return data.decode(detected), _codec_name(detected), f"detected, as {not_utf8}"
    for codec in ("cp1252", "latin-1"):  # latin-1 decodes any byte, so this ends the search
        try:
            text = data.decode(codec)
        except UnicodeDecodeError:
            continue
        return text, _codec_name(codec), f"a guess, as {not_utf8} and no encoding was detected"
    raise AssertionError("latin-1 decodes every byte")


def _detect_encoding(data: bytes) -> str | None:
    """charset-normalizer's choice, if it is installed and the choice decodes the whole file."""
    try:
        from charset_normalizer import from_bytes
    except ImportError:
        return None
    matches = from_bytes(data)
    best = matches.best()
    if best is None:
        return None
    choice = best.encoding
    # On the few hundred bytes of a small catalog, Western code pages tie (cp1250 reads "Crème" as "Crčme" as
    # happily as cp1252 reads it right). Catalogs in a legacy encoding are overwhelmingly Excel's cp1252, so it
    # wins a tie; a real difference (Cyrillic, Greek, CJK) still picks the other.
    for m in matches:
        if m.encoding == "cp1252" and m.chaos <= best.chaos and m.coherence >= best.coherence - 0.05:
            choice = "cp1252"
            break
    try:
        data.decode(choice)
    except (UnicodeDecodeError, LookupError):
        return None
    return choice


def _read_json(path: Path, text: str) -> Iterator[BookRecord | RowError]:
    """JSONL, a JSON array of objects, or one (possibly pretty-printed) object; each row numbered by its line."""
    try:
        whole = json.loads(text)
    except json.JSONDecodeError as exc:
        if text.lstrip().startswith("["):
            # Inside a broken array there is no telling where the next row starts, so no row can be trusted.
            raise CatalogFileError(
                f"{path}: not a valid JSON array ({exc.msg} on line {exc.lineno}, column {exc.colno}); "
                "nothing was read"
            ) from None
        yield from _read_jsonl(io.StringIO(text, newline=""))
        return
    start = len(text) - len(text.lstrip())
    if isinstance(whole, dict):
        yield _record_or_error(text.count("\n", 0, start) + 1, whole)
        return
    if not isinstance(whole, list):
        raise CatalogFileError(f"{path}: a JSON {type(whole).__name__} is not a catalog; expected objects")
    # Walk the array again to learn where each element starts; json.loads already proved it well formed.
    decoder = json.JSONDecoder()
    pos = start + 1
    for _ in whole:
        pos = _skip(text, pos, ",")
        item, end = decoder.raw_decode(text, pos)
        line = text.count("\n", 0, pos) + 1
        if isinstance(item, dict):
            yield _record_or_error(line, item)
        else:
            yield RowError(line, f"expected a JSON object, got {type(item).__name__}")
        pos = end


def _skip(text: str, pos: int, separator: str) -> int:
    while text[pos].isspace() or text[pos] == separator:
        pos += 1
    return pos


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
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:  # the reader has consumed the bad line, so the next row still reads
            yield RowError(last_line + 1, f"not a readable CSV row ({exc})")
            last_line = reader.line_num
            continue
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
-- A person's manual edits outrank a bulk file; a row that would change nothing is not written (the caller tells
-- the two apart). Each test mirrors the assignment above: what the row says, where it says anything.
where b.metadata_source <> 'manual'
  and (b.metadata_source <> 'catalog'
       or excluded.title is distinct from b.title
       or (cardinality(excluded.authors) > 0 and excluded.authors is distinct from b.authors)
       or (excluded.published_year is not null and excluded.published_year is distinct from b.published_year)
       or (excluded.language is not null and excluded.language is distinct from b.language)
       or not (excluded.tags <@ b.tags))
-- xmax is 0 only on a freshly inserted row version: the standard way to tell insert from update in one statement.
returning (xmax = 0) as inserted, b.book_id
"""

_INSERT_WITHOUT_ISBN = """
insert into catalog.book (title, authors, published_year, language, tags, metadata_source)
values (%(title)s, %(authors)s, %(published_year)s, %(language)s, %(tags)s, 'catalog')
"""


# SQLSTATE classes that are about the row's data (22 data exception, 23 integrity, 54 program limit such as "string
# is too long for tsvector"): the row is refused and the import goes on. Anything else (a lost connection, a missing
# table) is not the row's fault, so it ends the import and its transaction rolls back.
_ROW_DATABASE_ERRORS = (psycopg.errors.DataError, psycopg.errors.IntegrityError, psycopg.errors.ProgramLimitExceeded)


def import_books(conn: psycopg.Connection, records: Iterable[BookRecord | RowError]) -> ImportReport:
    """Upsert records into catalog.book by ISBN-13 in one transaction, each record standing alone.

    RowErrors pass straight into the report. Each record is written in a savepoint of its own, so one the database
    refuses becomes a RowError and the others are kept. Within one call the first record with an ISBN wins: a later
    record with the same ISBN is refused as a duplicate, naming the line of the first. A record without an ISBN is
    inserted only if no book with the same title (series note and punctuation ignored) and first author exists, so
    re-importing a file does not duplicate them. An exception other than a row's data error rolls everything back.

    A RowError's line is the record's line in its file, or its 1-based position in `records` if it has none.
    """
    report = ImportReport(inserted=0, updated=0)
    first_line_of: dict[str, int] = {}
    with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
        for position, record in enumerate(records, start=1):
            if isinstance(record, RowError):
                report.errors.append(record)
                continue
            line = record._line if record._line is not None else position
            if record.isbn13 is not None:
                if record.isbn13 in first_line_of:
                    report.errors.append(RowError(line, (
                        f"duplicate of ISBN {record.isbn13} on line {first_line_of[record.isbn13]}; "
                        "the first row wins")))
                    continue
                first_line_of[record.isbn13] = line
            try:
                with conn.transaction():
                    outcome = _write(cur, record)
            except _ROW_DATABASE_ERRORS as exc:
                report.errors.append(RowError(line, f"refused by the database: {_database_reason(exc)}"))
                continue
            setattr(report, outcome, getattr(report, outcome) + 1)
    return report


def _write(cur: psycopg.Cursor, record: BookRecord) -> str:
    """'inserted', 'updated', 'unchanged' or 'skipped': what writing one record did."""
    if record.isbn13 is None:
        return "inserted" if _insert_unless_known(cur, record) else "skipped"
    row = cur.execute(_UPSERT_BY_ISBN, record.model_dump()).fetchone()
    if row is not None:
        if not row["inserted"]:
            # The copies of an edited book carry its fields in their search documents.
            append_event(cur.connection, BookUpdated(book_id=str(row["book_id"])))
        return "inserted" if row["inserted"] else "updated"
    # The conflicting row was left alone: curated by hand, or already what the record says. The upsert locked it.
    existing = cur.execute("select metadata_source from catalog.book where isbn13 = %s", (record.isbn13,)).fetchone()
    return "skipped" if existing["metadata_source"] == "manual" else "unchanged"


def _database_reason(exc: psycopg.Error) -> str:
    primary = exc.diag.message_primary or str(exc).splitlines()[0]
    if len(primary) > 160:  # Postgres quotes the offending value, which may be the megabyte that caused it
        primary = primary[:159] + "…"
    return f"{primary} ({exc.sqlstate})" if exc.sqlstate else primary


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


def create_book_from_identification(conn: psycopg.Connection, identification: dict[str, Any]) -> str:
    """The book an ingest identification names, created if the catalog lacks it; its id.

    For a book first seen in a photo. Metadata from a provider (Open Library) is trusted; from OCR the book is
    marked for review. An existing book with the same ISBN is returned as it is. `identification` is an
    ingest.identification row: isbn13, title, and evidence.metadata when a provider answered. Runs in the
    caller's transaction when there is one.
    """
    meta = (identification.get("evidence") or {}).get("metadata") or {}
    isbn = identification.get("isbn13")
    title = meta.get("title") or identification.get("title") or (f"Unknown title (ISBN {isbn})" if isbn else None)
    source = "openlibrary" if meta.get("provider") == "openlibrary" else "ocr"
    with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(
            """
            insert into catalog.book (isbn13, title, authors, published_year, language, tags, metadata_source,
                                      needs_review)
            values (%s, %s, %s, %s, %s, %s, %s, %s)
            on conflict (isbn13) do update set isbn13 = excluded.isbn13
            returning book_id
            """,
            (
                isbn, title, meta.get("authors") or [], meta.get("published_year"), meta.get("language"),
                meta.get("tags") or [], source, source == "ocr",
            ),
        ).fetchone()
    return str(row["book_id"])
