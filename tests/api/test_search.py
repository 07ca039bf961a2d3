"""GET /v1/search and GET /v1/copies/{id}/similar over real HTTP: only copies the caller may see, on every query."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from covr_core.search import sync
from covr_core.search.embedded import PostgresSearch
from tests.core.search_support import connector


def _book(api, title, authors, year=None, tags=()):
    return api.sql("insert into catalog.book (title, authors, published_year, tags) values (%s, %s, %s, %s) "
                   "returning book_id", (title, list(authors), year, list(tags)))[0]["book_id"]


def _copy(api, book_id, owner, status="available", grade=None):
    return str(api.sql("insert into catalog.copy (book_id, owner_id, current_holder_id, status, condition_grade) "
                       "values (%s, %s, %s, %s, %s) returning copy_id",
                       (book_id, owner.user_id, owner.user_id, status, grade))[0]["copy_id"])


def _cover(api, copy_id, owner, vector):
    sha = hashlib.sha256(copy_id.encode()).hexdigest()
    image = api.sql("insert into media.image (object_key, uploader_id, status, sha256, phash, byte_size, format, "
                    "copy_id) values (%s, %s, 'accepted', %s, 1, 10, 'jpeg', %s) returning image_id",
                    (f"uploads/{owner.user_id}/{copy_id}.jpg", owner.user_id, sha, copy_id))[0]["image_id"]
    literal = "[" + ",".join(map(repr, np.asarray(vector, dtype=np.float32).tolist())) + "]"
    api.sql("insert into media.cover_embedding (image_id, model, embedding, copy_id, kind, sha256) "
            "values (%s, 'test', %s::vector, %s, 'cover_front', %s)", (image, literal, copy_id, sha))


@pytest.fixture
def shelves(api, member, befriend):
    alice, bob, carol = member("alice"), member("bob", display_name="Bob Stone"), member("carol")
    befriend(alice, bob)
    dune = _book(api, "Dune", ["Frank Herbert"], 1965, ["sci-fi"])
    messiah = _book(api, "Dune Messiah", ["Frank Herbert"], 1969, ["sci-fi"])
    prag = _book(api, "The Pragmatic Programmer", ["Andrew Hunt", "David Thomas"], 2019, ["programming"])
    copies = {"a_dune": _copy(api, dune, alice, grade=7), "a_prag": _copy(api, prag, alice, grade=9),
              "b_messiah": _copy(api, messiah, bob, grade=5), "b_lost": _copy(api, dune, bob, status="lost"),
              "c_dune": _copy(api, dune, carol, grade=10)}
    connect = connector(api.db_url)
    sync.run_round(connect, PostgresSearch(connect))
    connect.pool.close()
    return {"alice": alice, "bob": bob, "carol": carol, "copies": copies}


def _ids(response):
    assert response.status_code == 200, response.text
    return {h["copy_id"] for h in response.json()["hits"]}


def test_search_returns_only_copies_the_caller_may_see(shelves):
    alice, c = shelves["alice"], shelves["copies"]
    assert _ids(alice.client.get("/v1/search", params={"q": "dune"})) == {c["a_dune"], c["b_messiah"]}
    assert _ids(shelves["carol"].client.get("/v1/search", params={"q": "dune"})) == {c["c_dune"]}
    assert c["b_lost"] in _ids(shelves["bob"].client.get("/v1/search", params={"q": "dune"}))
    # No filter widens what Alice sees: not Carol's copy by holder, not Bob's lost one by status.
    for f in (f"current_holder_id = {shelves['carol'].user_id}", "status = lost", "status != available",
              f"owner_id = {shelves['carol'].user_id} OR status = lost"):
        ids = _ids(alice.client.get("/v1/search", params={"filter": f, "limit": 100}))
        assert not ids & {c["c_dune"], c["b_lost"]}, f


def test_query_filters_sort_pagination_and_facets(shelves):
    client = shelves["alice"].client
    body = client.get("/v1/search", params={"q": "dune", "facets": "status,tags"}).json()
    assert [h["title"] for h in body["hits"]] == ["Dune", "Dune Messiah"]
    assert body["total"] == 2 and body["facets"] == {"status": {"available": 2}, "tags": {"sci-fi": 2}}
    assert body["backend"] == "postgres" and body["took_ms"] >= 0
    assert body["hits"][1]["current_holder_name"] == "Bob Stone"
    titles = lambda r: [h["title"] for h in r.json()["hits"]]  # noqa: E731
    assert titles(client.get("/v1/search", params={"q": "pragmatc programer"})) == ["The Pragmatic Programmer"]
    assert titles(client.get("/v1/search", params={"filter": "condition_grade >= 7", "sort": "condition_grade:desc"})
                  ) == ["The Pragmatic Programmer", "Dune"]
    page = client.get("/v1/search", params={"sort": "title", "limit": 2, "offset": 1}).json()
    assert [h["title"] for h in page["hits"]] == ["Dune Messiah", "The Pragmatic Programmer"] and page["total"] == 3


def test_bad_searches_are_422_problems_and_need_a_token(shelves, api):
    client = shelves["alice"].client
    for params in ({"filter": "notes = x"}, {"sort": "owner_id"}, {"facets": "notes"}, {"filter": "status ="},
                   {"limit": 0}, {"offset": 990, "limit": 20}):
        r = client.get("/v1/search", params=params)
        assert r.status_code == 422, (params, r.text)
        assert r.headers["content-type"].startswith("application/problem+json")
    with api.client() as anon:
        assert anon.get("/v1/search", params={"q": "dune"}).status_code == 401


def test_similar_covers_among_visible_copies(shelves, api):
    c, alice = shelves["copies"], shelves["alice"]
    rng = np.random.default_rng(5)
    base = rng.normal(size=512)
    for key, noise in (("a_dune", 0.0), ("b_messiah", 0.05), ("c_dune", 0.01), ("a_prag", 3.0)):
        owner = {"a": alice, "b": shelves["bob"], "c": shelves["carol"]}[key[0]]
        _cover(api, c[key], owner, base + noise * rng.normal(size=512))
    r = alice.client.get(f"/v1/copies/{c['a_dune']}/similar")
    assert r.status_code == 200, r.text
    data = r.json()["data"]
    # Carol's near-identical cover is not Alice's to see; Bob's is, and comes before her own unrelated cover.
    assert [d["copy_id"] for d in data] == [c["b_messiah"], c["a_prag"]]
    assert data[0]["score"] > 0.99 > data[1]["score"]
    # A copy Alice may not see answers exactly like a missing one.
    for other in (c["c_dune"], "00000000-0000-0000-0000-000000000000", "nope"):
        r = alice.client.get(f"/v1/copies/{other}/similar")
        assert r.status_code == 404 and r.json()["detail"] == f"copy {other} not found"
    assert alice.client.get(f"/v1/copies/{c['a_prag']}/similar", params={"limit": 1}).json()["count"] == 1
