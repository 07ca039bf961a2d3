"""Pipeline fixtures: real resources over the test's own database and object folder."""

from __future__ import annotations

import json

import pytest

from covr_core.catalog.books import import_books, read_catalog_file
from covr_core.contact.accounts import ensure_user
from covr_pipelines.resources import build_resources
from covr_pipelines.sample_photos import valid_isbn13

BOOKS = [
    ("The Quiet Orchard", "Maria Lindqvist"),
    ("Rivers of Salt", "Tomas Ferreira"),
    ("A Grammar of Stars", "Helen Okafor"),
    ("Winter Ledger", "Samuel Adeyemi"),
    ("The Glass Cartographer", "Ines Moreau"),
]


@pytest.fixture
def catalog(conn, tmp_path):
    """Five books in the local catalog, imported the way an operator would."""
    books = [{"isbn13": valid_isbn13(i + 100), "title": t, "authors": [a], "published_year": 2001 + i,
              "language": "en", "tags": ["fiction"]} for i, (t, a) in enumerate(BOOKS)]
    path = tmp_path / "catalog.jsonl"
    path.write_text("".join(json.dumps(b) + "\n" for b in books))
    import_books(conn, list(read_catalog_file(path)))
    conn.commit()
    return books


@pytest.fixture
def resources(settings):
    return build_resources(settings)


@pytest.fixture
def store(resources):
    return resources["object_store"].store()


@pytest.fixture
def user(conn):
    def make(handle: str) -> str:
        return ensure_user(conn, handle)

    return make
