"""The Meilisearch adapter's contract, against a local server that records requests; and a real Meilisearch when
MEILI_URL is set."""

from __future__ import annotations

import os

import pytest

from covr_core.exchange import circulation
from covr_core.search.backend import Scope
from covr_core.search.meili import SETTINGS, MeiliError, MeiliSearch, settings_changes, visibility_filter
from covr_core.search.service import build_request, search_copies
from tests.core import meili_fake
from tests.core.search_support import befriend, book, connector, copy, user


@pytest.fixture
def fake():
    server, url, stop = meili_fake.start()
    yield server, url
    stop()


@pytest.fixture
def shelf(conn, db_url):
    conn.autocommit = True
    alice, bob = user(conn, "alice"), user(conn, "bob")
    befriend(conn, alice, bob)
    ids = [copy(conn, book(conn, f"Volume {i}", ["Ann Author"], year=2000 + i), alice) for i in range(5)]
    connect = connector(db_url)
    yield {"conn": conn, "connect": connect, "ids": sorted(ids), "alice": alice, "bob": bob}
    connect.pool.close()


def _backend(url, shelf=None, **kw):
    return MeiliSearch(url, api_key="master", connect=shelf["connect"] if shelf else None, poll_s=0.001, **kw)


def test_settings_are_applied_exactly_and_only_when_they_differ(fake):
    server, url = fake
    backend = _backend(url)
    backend.ensure()
    assert server.paths() == ["GET /indexes/copies", "POST /indexes", "GET /tasks/0", "GET /tasks/0",
                              "GET /indexes/copies/settings", "PATCH /indexes/copies/settings", "GET /tasks/1",
                              "GET /tasks/1"]
    patch = next(r.body for r in server.requests if r.method == "PATCH")
    assert patch["filterableAttributes"] == ["status", "current_holder_id", "owner_id", "tags", "condition_grade",
                                             "published_year", "language"]
    assert patch["sortableAttributes"] == ["title", "published_year", "condition_grade", "created_at"]
    assert patch["searchableAttributes"] == ["title", "authors", "search_terms", "tags", "notes"]
    assert "pagination" not in patch and "typoTolerance" not in patch  # already the default: not sent
    stored = server.indexes["copies"]["settings"]
    assert settings_changes(stored) == {}
    assert all(stored[k] == SETTINGS[k] for k in ("filterableAttributes", "sortableAttributes",
                                                  "searchableAttributes", "rankingRules", "faceting"))
    server.requests.clear()
    backend.ensure()  # idempotent: nothing to change, nothing written
    assert server.paths() == ["GET /indexes/copies", "GET /indexes/copies/settings"]
    # Meilisearch returns filterable attributes in its own order; the same set is not a change.
    stored["filterableAttributes"] = sorted(stored["filterableAttributes"])
    assert settings_changes(stored) == {}
    stored["filterableAttributes"].append("notes")
    assert set(settings_changes(stored)) == {"filterableAttributes"}


def test_documents_go_in_sized_batches_and_every_task_is_awaited(fake, shelf):
    server, url = fake
    backend = _backend(url, shelf, batch_size=2)
    backend.ensure()
    server.requests.clear()
    report = backend.apply(shelf["conn"], shelf["ids"] + ["00000000-0000-0000-0000-000000000000"])
    assert (report.upserted, report.deleted) == (5, 1)
    posts = [r for r in server.requests if r.path == "/indexes/copies/documents"]
    assert [len(r.body) for r in posts] == [2, 2, 1] and all(r.query == {"primaryKey": ["copy_id"]} for r in posts)
    # Each write is followed by polls of its task until it succeeded, before the next write goes out.
    sequence = server.paths()
    for i, path in enumerate(sequence):
        if path.startswith("POST"):
            assert sequence[i + 1] == sequence[i + 2] and sequence[i + 1].startswith("GET /tasks/")
    assert sequence[-3] == "POST /indexes/copies/documents/delete-batch"
    doc = server.indexes["copies"]["docs"][shelf["ids"][0]]
    assert set(doc) >= {"copy_id", "title", "authors", "status", "current_holder_id", "owner_id", "search_terms",
                        "created_at", "updated_at"} and doc["created_at"].endswith("Z")
    assert backend.count() == 5 and backend.documents(shelf["ids"][:1])[0] == doc


def test_a_reindex_fills_the_next_index_and_swaps_it_in(fake, shelf):
    server, url = fake
    backend = _backend(url, shelf, batch_size=3)
    report = backend.reindex()
    assert report.documents == 5
    writes = [p for p in server.paths() if not p.startswith("GET")]
    assert writes == ["POST /indexes", "PATCH /indexes/copies/settings",
                      "POST /indexes", "PATCH /indexes/copies_next/settings",
                      "POST /indexes/copies_next/documents", "POST /indexes/copies_next/documents",
                      "POST /swap-indexes", "DELETE /indexes/copies_next"]
    swap = next(r.body for r in server.requests if r.path == "/swap-indexes")
    assert swap == [{"indexes": ["copies", "copies_next"]}]
    assert len(server.indexes["copies"]["docs"]) == 5 and "copies_next" not in server.indexes
    server.requests.clear()
    backend.reindex()  # again: copies exists, so only the next index is created
    assert [p for p in server.paths() if not p.startswith("GET")][:2] == [
        "POST /indexes", "PATCH /indexes/copies_next/settings"]


def test_a_failed_task_raises_naming_the_task_and_the_index(fake, shelf):
    server, url = fake
    backend = _backend(url, shelf)
    backend.ensure()
    server.fail_types.add("documentAdditionOrUpdate")
    with pytest.raises(MeiliError) as caught:
        backend.apply(shelf["conn"], shelf["ids"])
    message = str(caught.value)
    assert "task 2 (documentAdditionOrUpdate) on index copies failed" in message
    assert "invalid_document_fields: boom" in message


def test_a_refused_request_and_an_unreachable_server_are_named(fake):
    server, url = fake
    with pytest.raises(MeiliError, match=r"refused GET /indexes/copies/settings .* HTTP 404 index_not_found"):
        _backend(url).apply_settings()
    with pytest.raises(MeiliError, match="unreachable"):
        MeiliSearch("http://127.0.0.1:9", timeout_s=0.5).count()


def test_searches_carry_the_visibility_filter(fake, shelf):
    server, url = fake
    backend = _backend(url, shelf)
    backend.reindex()
    server.requests.clear()
    result = search_copies(shelf["conn"], backend, viewer_id=shelf["alice"], q="volum", filter="tags = x OR "
                           "published_year > 2001", sort="title:desc", facets="status", limit=3)
    body = server.requests[0].body
    a, b = shelf["alice"], shelf["bob"]
    assert body["filter"] == (f'(owner_id = "{a}" OR current_holder_id = "{a}" OR (current_holder_id IN ["{b}"] '
                              'AND status NOT IN ["withdrawn", "lost"])) AND (tags = "x" OR published_year > 2001)')
    assert (body["q"], body["sort"], body["facets"], body["limit"]) == ("volum", ["title:desc"], ["status"], 3)
    assert len(result.hits) == 3 and result.total == 5 and result.backend == "meilisearch"
    assert visibility_filter(Scope(viewer_id=None)) is None
    search_copies(shelf["conn"], backend, viewer_id=None)
    assert "filter" not in server.requests[-1].body and server.requests[-1].body["sort"] == ["created_at:desc"]


# --- a real Meilisearch -------------------------------------------------------------------------------------------


@pytest.mark.meili
@pytest.mark.skipif(not os.environ.get("MEILI_URL"), reason="needs MEILI_URL")
def test_a_real_meilisearch_indexes_searches_and_swaps(conn, db_url):
    conn.autocommit = True
    alice, bob, carol = user(conn, "alice"), user(conn, "bob"), user(conn, "carol")
    befriend(conn, alice, bob)
    prag = copy(conn, book(conn, "The Pragmatic Programmer", ["Andrew Hunt"], year=2019), alice)
    dune = copy(conn, book(conn, "Dune", ["Frank Herbert"], year=1965), bob)
    hidden = copy(conn, book(conn, "Dune Messiah", ["Frank Herbert"], year=1969), carol)
    connect = connector(db_url)
    index = f"copies_test_{os.getpid()}"
    backend = MeiliSearch(os.environ["MEILI_URL"], api_key=os.environ.get("MEILI_MASTER_KEY"), index=index,
                          connect=connect)
    try:
        assert backend.reindex().documents == 3
        backend.ensure()
        as_alice = backend.search(build_request(q="pragmatc programer"), Scope(alice, (bob,)))
        assert [h["copy_id"] for h in as_alice.hits] == [prag]
        dunes = backend.search(build_request(q="dune"), Scope(alice, (bob,)))
        assert [h["copy_id"] for h in dunes.hits] == [dune] and hidden not in {h["copy_id"] for h in dunes.hits}
        circulation.withdraw(conn, user_id=alice, copy_id=prag)
        assert backend.apply(conn, [prag]).deleted == 1 and backend.count() == 2
    finally:
        for name in (index, f"{index}_next"):
            backend._http.delete(f"/indexes/{name}")
        connect.pool.close()
