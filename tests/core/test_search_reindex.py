"""A full reindex swaps a fresh table in while searches run: none of them ever sees an empty or partial index."""

from __future__ import annotations

import threading
from contextlib import contextmanager

import psycopg
import pytest
from psycopg.rows import dict_row

from covr_core.platform import migrations
from covr_core.search.document import FILTERABLE
from covr_core.search.embedded import LOAD_SHARES, PostgresSearch
from covr_core.search.query import FOLDED_ARRAYS
from covr_core.search.service import search_copies
from tests.conftest import scratch_database
from tests.core.search_support import connector, generated_books

COPIES = 300


@pytest.fixture
def shelf(admin_url, template_db):
    with scratch_database(admin_url, "covr_reindex", template_db) as url:
        with psycopg.connect(url, autocommit=True, row_factory=dict_row) as conn:
            owner = conn.execute("insert into contact.user (handle, display_name) values ('reader', 'Reader') "
                                 "returning user_id").fetchone()["user_id"]
            with conn.transaction():
                for b in generated_books(COPIES, seed=3):
                    book_id = conn.execute("insert into catalog.book (title, authors) values (%s, %s) "
                                           "returning book_id", (b["title"], b["authors"])).fetchone()["book_id"]
                    conn.execute("insert into catalog.copy (book_id, owner_id, current_holder_id, notes) "
                                 "values (%s, %s, %s, 'shelf')", (book_id, owner, owner))
            connect = connector(url, max_size=8)
            backend = PostgresSearch(connect)
            backend.reindex()
            yield {"conn": conn, "backend": backend, "owner": str(owner), "connect": connect}
            connect.pool.close()


def test_searches_during_reindexes_never_see_an_empty_or_partial_index(shelf):
    backend, stop, seen, errors = shelf["backend"], threading.Event(), [], []

    def searcher():
        with shelf["connect"]() as conn:
            while not stop.is_set():
                try:
                    result = search_copies(conn, backend, viewer_id=shelf["owner"], q="shelf", facets="status",
                                           limit=5)
                    seen.append((result.total, result.facets["status"].get("available")))
                except Exception as exc:  # noqa: BLE001 - collected and asserted below
                    errors.append(exc)

    threads = [threading.Thread(target=searcher) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        for _ in range(4):
            report = backend.reindex()
            assert report.documents == COPIES
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    assert not errors, errors[:3]
    # total is capped at 1000 and there are 300: every answer counted every document, and the facets agree.
    assert len(seen) > 10 and set(seen) == {(COPIES, COPIES)}
    generation = shelf["conn"].execute("select generation, documents from search.state").fetchone()
    assert generation == {"generation": 6, "documents": COPIES}
    tables = shelf["conn"].execute("select tablename from pg_tables where schemaname = 'search' order by 1")
    assert [r["tablename"] for r in tables] == ["copy_document", "state", "term"]


def test_a_failed_build_leaves_the_live_index_alone(shelf, monkeypatch):
    backend = shelf["backend"]
    import covr_core.search.embedded as embedded

    monkeypatch.setattr(embedded, "_DOC_SELECT", embedded._DOC_SELECT.replace("m.notes,", "m.no_such_column,"))
    with pytest.raises(psycopg.errors.UndefinedColumn):
        backend.reindex()
    monkeypatch.undo()
    assert backend.count() == COPIES
    assert search_copies(shelf["conn"], backend, viewer_id=None, q="shelf").total == COPIES
    assert backend.reindex().documents == COPIES  # the leftover next table is dropped and rebuilt


def test_every_share_of_a_reindex_reads_one_snapshot(shelf):
    """A copy committed while the shares load is in none of them (the sync brings it in after the swap): each share
    reads the snapshot the first one exported, not a later one of its own."""
    conn, backend, connections = shelf["conn"], shelf["backend"], []
    book_id = conn.execute("insert into catalog.book (title, authors) values ('Late Arrival', '{Someone}') "
                           "returning book_id").fetchone()["book_id"]
    # A copy id the last share would load.
    late_id = conn.execute(
        "select id from (select gen_random_uuid() as id from generate_series(1, 64)) g "
        "where (uuid_hash(id) & 2147483647) %% %(shares)s = %(shares)s - 1 limit 1",
        {"shares": LOAD_SHARES},
    ).fetchone()["id"]

    @contextmanager
    def connect():
        connections.append(1)
        if len(connections) == 2:  # the second share's connection: the first has exported its snapshot by now
            conn.execute("insert into catalog.copy (copy_id, book_id, owner_id, current_holder_id) "
                         "values (%s, %s, %s, %s)", (late_id, book_id, shelf["owner"], shelf["owner"]))
        with shelf["connect"]() as c:
            yield c

    report = backend.reindex(connect)
    assert len(connections) == LOAD_SHARES
    assert report.documents == COPIES
    assert backend.documents([late_id]) == []
    assert backend.reindex().documents == COPIES + 1


def test_a_reindex_leaves_statistics_for_every_column_searches_filter_on(shelf):
    rows = shelf["conn"].execute(
        "select attname from pg_stats where schemaname = 'search' and tablename = 'copy_document'"
    ).fetchall()
    assert {"copy_id", "tsv", *(FOLDED_ARRAYS.get(f, f) for f in FILTERABLE)} <= {r["attname"] for r in rows}


def test_migration_0035_lower_cases_the_tags_of_the_live_documents(shelf):
    """The live table of an older schema gets tag_keys filled from its own rows, and tag filters work at once."""
    conn, backend = shelf["conn"], shelf["backend"]
    conn.execute("update catalog.book set tags = '{Poetry, \"Sci, Fi\"}' where book_id = "
                 "(select book_id from catalog.book order by book_id limit 1)")
    backend.reindex()
    conn.execute("alter table search.copy_document drop column tag_keys")
    conn.execute("delete from public.schema_migrations where filename like '0035%%'")
    assert migrations.migrate(conn) == ["0035_keep_search_tags_lower_cased.sql"]
    assert search_copies(conn, backend, viewer_id=None, filter="tags = POETRY").total == 1
    assert search_copies(conn, backend, viewer_id=None, filter='tags = "sci, fi"').total == 1
    assert search_copies(conn, backend, viewer_id=None, filter="tags != poetry").total == COPIES - 1
