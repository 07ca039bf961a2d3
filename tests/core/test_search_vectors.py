"""Cover vectors as a search read model: payloads follow hand-overs, rebuilds swap a fresh store in (pgvector table,
Qdrant collection behind an alias), and similar covers stay among visible copies."""

from __future__ import annotations

import hashlib
import os

import numpy as np
import pytest

from covr_core.search import sync
from covr_core.search.embedded import PostgresSearch
from covr_core.search.vectors import payload_updater, similar_copies
from covr_core.platform.settings import Settings
from covr_core.vectors import rebuild
from covr_core.vectors.stores import PgVectorStore, QdrantVectorStore
from tests.core.search_support import befriend, book, connector, copy, user


def _cover(conn, copy_id, uploader, vector):
    sha = hashlib.sha256(copy_id.encode()).hexdigest()
    image = conn.execute("insert into media.image (object_key, uploader_id, status, sha256, phash, byte_size, format, "
                         "copy_id) values (%s, %s, 'accepted', %s, 1, 10, 'jpeg', %s) returning image_id",
                         (f"uploads/{copy_id}.jpg", uploader, sha, copy_id)).fetchone()["image_id"]
    literal = "[" + ",".join(map(repr, np.asarray(vector, dtype=np.float32).tolist())) + "]"
    conn.execute("insert into media.cover_embedding (image_id, model, embedding, copy_id, kind, sha256) "
                 "values (%s, 'test', %s::vector, %s, 'cover_front', %s)", (image, literal, copy_id, sha))
    return str(image)


@pytest.fixture
def covers(conn, db_url):
    conn.autocommit = True
    alice, bob = user(conn, "alice"), user(conn, "bob")
    befriend(conn, alice, bob)
    rng = np.random.default_rng(1)
    base = rng.normal(size=512)
    ids = {}
    for name, owner, noise in (("a1", alice, 0.0), ("a2", alice, 0.1), ("b1", bob, 0.05), ("b2", bob, 2.0)):
        ids[name] = copy(conn, book(conn, f"Cover {name}", []), owner)
        _cover(conn, ids[name], owner, base + noise * rng.normal(size=512))
    connect = connector(db_url)
    yield {"conn": conn, "connect": connect, "alice": alice, "bob": bob, "ids": ids}
    connect.pool.close()


def _payload(conn, copy_id):
    return conn.execute("select owner_id::text, holder_id::text, copy_status from media.cover_embedding "
                        "where copy_id = %s", (copy_id,)).fetchone()


def _hnsw_definitions(conn) -> list[str]:
    return [r["indexdef"] for r in conn.execute(
        "select indexdef from pg_indexes where schemaname = 'media' and tablename = 'cover_embedding' "
        "and indexdef like '%%USING hnsw%%'")]


def test_the_migrated_hnsw_index_has_24_links_per_node(covers):
    [definition] = _hnsw_definitions(covers["conn"])
    assert "m='24'" in definition and "ef_construction='64'" in definition


def test_pgvector_rebuild_swaps_a_fresh_table_with_payloads(covers):
    conn = covers["conn"]
    report = rebuild.rebuild_pgvector(conn)
    assert report.points == 4
    assert _payload(conn, covers["ids"]["b1"]) == {"owner_id": covers["bob"], "holder_id": covers["bob"],
                                                   "copy_status": "available"}
    [definition] = _hnsw_definitions(conn)
    assert "m='24'" in definition and "ef_construction='64'" in definition
    store = PgVectorStore(covers["connect"])
    store.ensure_collection()
    assert store.count() == 4
    rebuild.rebuild_pgvector(conn)  # twice: constraint and index names never clash
    assert store.count() == 4


def test_the_sync_moves_vector_payloads_with_the_copy(covers):
    conn, ids = covers["conn"], covers["ids"]
    connect = covers["connect"]
    backend = PostgresSearch(connect)
    update = payload_updater(Settings())
    sync.run_round(connect, backend, vector_payloads=update)
    from covr_core.exchange import handovers, requests

    request = requests.create(conn, requester_id=covers["bob"], copy_id=ids["a1"])
    handover = requests.accept(conn, user_id=covers["alice"], request_id=request.request_id).handover_id
    handovers.complete(conn, user_id=covers["bob"], handover_id=handover, condition_rating=8)
    report = sync.run_round(connect, backend, vector_payloads=update)
    assert report.vectors >= 1
    assert _payload(conn, ids["a1"]) == {"owner_id": covers["alice"], "holder_id": covers["bob"],
                                         "copy_status": "on_loan"}


def test_similar_covers_skip_what_the_viewer_cannot_see(covers):
    conn, ids = covers["conn"], covers["ids"]
    store = PgVectorStore(covers["connect"])
    as_alice = similar_copies(conn, store, viewer_id=covers["alice"],
                              copy_id=ids["a1"], limit=3)
    assert [s["copy_id"] for s in as_alice] == [ids["b1"], ids["a2"], ids["b2"]]
    conn.execute("delete from contact.link")
    as_alice = similar_copies(conn, store, viewer_id=covers["alice"], copy_id=ids["a1"], limit=3)
    assert [s["copy_id"] for s in as_alice] == [ids["a2"]]


def test_qdrant_rebuild_moves_the_alias_to_a_new_collection(covers):
    from qdrant_client import QdrantClient

    client = QdrantClient(":memory:")
    store = QdrantVectorStore(client, collection="cover_embeddings")
    store.ensure_collection()  # a plain collection from before aliases
    first = rebuild.rebuild_qdrant(store, covers["connect"])
    assert first.points == 4
    aliases = {a.alias_name: a.collection_name for a in client.get_aliases().aliases}
    assert aliases["cover_embeddings"] != "cover_embeddings" and aliases["cover_embeddings"] in first.target
    hits = store.search(np.ones(512), limit=4)
    assert len(hits) == 4
    second = rebuild.rebuild_qdrant(store, covers["connect"])
    collections = {c.name for c in client.get_collections().collections}
    assert collections == {second.target.split()[2]}  # the old generation is gone
    rebuild.update_qdrant_payloads(store, covers["conn"], [covers["ids"]["b1"]])
    [point] = [p for p in client.scroll("cover_embeddings", limit=10)[0]
               if p.payload["copy_id"] == covers["ids"]["b1"]]
    assert point.payload["holder_id"] == covers["bob"] and point.payload["copy_status"] == "available"


@pytest.mark.qdrant
@pytest.mark.skipif(not os.environ.get("QDRANT_URL"), reason="needs QDRANT_URL")
def test_a_real_qdrant_rebuild_and_alias(covers):
    store = QdrantVectorStore.from_url(os.environ["QDRANT_URL"], api_key=os.environ.get("QDRANT_API_KEY"),
                                       collection=f"covr_test_{os.getpid()}")
    try:
        report = rebuild.rebuild_qdrant(store, covers["connect"])
        assert report.points == 4 and store.count() == 4
        rebuild.rebuild_qdrant(store, covers["connect"])
        assert store.count() == 4
    finally:
        for a in store._client.get_aliases().aliases:
            if a.alias_name == store.collection:
                store._client.delete_collection(a.collection_name)
