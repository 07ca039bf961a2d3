"""The copy search document: folding shared with the SQL model, and a model row turned into an index document."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import psycopg

MODEL = "read_model.copy_search_document"

# The document's fields, in the model's order; what a hit carries on either backend.
FIELDS: tuple[str, ...] = (
    "copy_id", "book_id", "title", "authors", "isbn13", "published_year", "tags", "language", "status",
    "current_holder_id", "current_holder_name", "owner_id", "condition_grade", "has_images", "notes", "created_at",
    "updated_at", "search_terms",
)
FILTERABLE: tuple[str, ...] = (
    "status", "current_holder_id", "owner_id", "tags", "condition_grade", "published_year", "language",
)
SORTABLE: tuple[str, ...] = ("title", "published_year", "condition_grade", "created_at")
# Rank order of the searchable attributes (Meilisearch's searchableAttributes; the embedded tsvector's weights).
SEARCHABLE: tuple[str, ...] = ("title", "authors", "search_terms", "tags", "notes")

_MARKS = re.compile("[\u0300-\u036f]")
_NON_WORD = re.compile(r"[\W_]+")
_LETTERS = str.maketrans({"ø": "o", "ł": "l", "đ": "d", "ħ": "h", "ı": "i", "æ": "ae", "œ": "oe", "ß": "ss",
                          "þ": "th"})


def fold(text: str) -> str:
    """Accents and case folded, anything but letters and digits a single space: `search.fold_text` in Python.

    Both sides must fold alike, or a query word never meets its document word.
    """
    decomposed = _MARKS.sub("", unicodedata.normalize("NFD", text)).lower().translate(_LETTERS)
    return " ".join(_NON_WORD.sub(" ", decomposed).split())


def words(text: str) -> list[str]:
    """The folded words of `text`, in order."""
    return fold(text).split()


def iso(value: datetime) -> str:
    """A fixed-width UTC timestamp, so the strings sort as the instants do (Meilisearch sorts strings)."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def to_document(row: Mapping[str, Any]) -> dict[str, Any]:
    """A model row as the JSON document both backends return: uuids as strings, times as fixed-width ISO UTC."""
    doc: dict[str, Any] = {}
    for field in FIELDS:
        value = row[field]
        if field.endswith("_id") and value is not None:
            value = str(value)
        elif isinstance(value, datetime):
            value = iso(value)
        elif isinstance(value, tuple):
            value = list(value)
        doc[field] = value
    return doc


def model_rows(conn: psycopg.Connection, copy_ids: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """Documents of the given copies (all of them when None) from the SQL model; absent ids are gone or withdrawn."""
    cur = conn.cursor(row_factory=psycopg.rows.dict_row)
    if copy_ids is None:
        rows = cur.execute(f"select * from {MODEL} order by copy_id").fetchall()
    else:
        rows = cur.execute(f"select * from {MODEL} where copy_id = any(%s::uuid[]) order by copy_id",
                           (list(copy_ids),)).fetchall()
    return [to_document(r) for r in rows]


def iter_model_documents(conn: psycopg.Connection, *, batch: int = 5000):
    """Every document of the model, a batch at a time, from one server-side cursor (one snapshot)."""
    with conn.transaction():
        cur = conn.cursor(name="search_model_scan", row_factory=psycopg.rows.dict_row)
        cur.itersize = batch
        cur.execute(f"select * from {MODEL}")
        chunk = []
        for row in cur:
            chunk.append(to_document(row))
            if len(chunk) == batch:
                yield chunk
                chunk = []
        if chunk:
            yield chunk
