"""A generated typo set: 200 queries one or two edits from a real title or author; the book is in the top 10."""

from __future__ import annotations

import psycopg
import pytest
from psycopg.rows import dict_row

from covr_core.search.embedded import PostgresSearch
from covr_core.search.service import search_copies
from tests.conftest import scratch_database
from tests.core.search_support import connector, generated_books, typo_hit, typo_queries

BOOKS = 400


@pytest.fixture(scope="module")
def catalog(admin_url, template_db):
    with scratch_database(admin_url, "covr_typos", template_db) as url:
        books = generated_books(BOOKS)
        with psycopg.connect(url, autocommit=True, row_factory=dict_row) as conn:
            owner = conn.execute("insert into contact.user (handle, display_name) values ('reader', 'Reader') "
                                 "returning user_id").fetchone()["user_id"]
            with conn.cursor() as cur, conn.transaction():
                for b in books:
                    b["book_id"] = str(cur.execute(
                        "insert into catalog.book (title, authors, published_year, tags) values (%s, %s, %s, %s) "
                        "returning book_id", (b["title"], b["authors"], b["year"], b["tags"])).fetchone()["book_id"])
                    cur.execute("insert into catalog.copy (book_id, owner_id, current_holder_id) values (%s, %s, %s)",
                                (b["book_id"], owner, owner))
            connect = connector(url)
            backend = PostgresSearch(connect)
            backend.reindex()
            yield {"conn": conn, "backend": backend, "books": books}
            connect.pool.close()


def test_typo_recall_at_10_is_at_least_95_percent(catalog):
    queries = typo_queries(catalog["books"], 200)
    assert len(queries) == 200
    found, misses = 0, []
    for query, index, by_author in queries:
        result = search_copies(catalog["conn"], catalog["backend"], viewer_id=None, q=query, limit=10)
        if typo_hit(catalog["books"], index, by_author, result.hits):
            found += 1
        else:
            misses.append((query, catalog["books"][index]["title"]))
    assert found / len(queries) >= 0.95, misses


def test_without_expansion_typos_mostly_miss(catalog):
    """The baseline the dictionary is for: the same queries with typo expansion off."""
    plain = PostgresSearch(catalog["backend"]._connect)
    # No neighbours and no word judged unmatchable: exact words and the last-word prefix only.
    plain.dictionary.expand = lambda word, typos: []
    plain.dictionary.knows = lambda word, typos, prefix=False: True
    queries = typo_queries(catalog["books"], 200)
    found = sum(typo_hit(catalog["books"], i, by_author, search_copies(
        catalog["conn"], plain, viewer_id=None, q=q, limit=10).hits) for q, i, by_author in queries)
    assert found < 120, found
