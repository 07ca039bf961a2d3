"""One contract for every vector store: pgvector in the real embedded Postgres, Qdrant local mode and server."""

from __future__ import annotations

import hashlib
import os
import uuid

import numpy as np
import psycopg
import pytest
from psycopg.conninfo import make_conninfo
from qdrant_client import QdrantClient

from covr_core.platform.db import open_pool
from covr_core.vectors.stores import CoverPoint, PgVectorStore, QdrantVectorStore, VectorStore

MODEL = "ViT-B-32:test"


class Backend:
    """A store plus ids that satisfy its foreign keys (pgvector checks them against media.image)."""

    def __init__(self, store: VectorStore, new_image, book_id: str, copy_id: str):
        self.store = store
        self.new_image = new_image
        self.book_id = book_id
        self.copy_id = copy_id


def _pg_backend(db_url: str):
    with psycopg.connect(db_url) as conn:
        user = conn.execute(
            "insert into contact.user (handle, display_name) values ('uploader', 'Uploader') returning user_id"
        ).fetchone()[0]
        book = conn.execute("insert into catalog.book (title) values ('A cover') returning book_id").fetchone()[0]
        copy = conn.execute(
            "insert into catalog.copy (book_id, owner_id, current_holder_id) values (%s, %s, %s) returning copy_id",
            (book, user, user),
        ).fetchone()[0]

    def new_image() -> str:
        image_id = str(uuid.uuid4())
        with psycopg.connect(db_url) as conn:
            conn.execute(
                "insert into media.image (image_id, object_key, uploader_id, status, sha256, phash, byte_size, format) "
                "values (%s, %s, %s, 'accepted', %s, 0, 1, 'jpeg')",
                (image_id, f"uploads/{image_id}.jpg", user, hashlib.sha256(image_id.encode()).hexdigest()),
            )
        return image_id

    pool = open_pool(db_url, max_size=2)
    return Backend(PgVectorStore(pool.connection), new_image, str(book), str(copy)), pool.close


def _qdrant_backend(client: QdrantClient, collection: str):
    store = QdrantVectorStore(client, collection=collection)

    def new_image() -> str:
        return str(uuid.uuid4())

    return Backend(store, new_image, str(uuid.uuid4()), str(uuid.uuid4()))


@pytest.fixture(
    params=[
        "pgvector",
        "qdrant-local",
        pytest.param("qdrant-server", marks=pytest.mark.qdrant),
    ]
)
def backend(request):
    if request.param == "pgvector":
        backend, close = _pg_backend(request.getfixturevalue("db_url"))
        backend.store.ensure_collection()
        yield backend
        close()
    elif request.param == "qdrant-local":
        backend = _qdrant_backend(QdrantClient(":memory:"), "cover_embeddings")
        backend.store.ensure_collection()
        yield backend
    else:
        url = os.environ.get("QDRANT_URL")
        if not url:
            pytest.skip("QDRANT_URL is not set: no Qdrant server to run the contract against")
        client = QdrantClient(url=url, api_key=os.environ.get("QDRANT_API_KEY"))
        collection = f"cover_embeddings_test_{uuid.uuid4().hex[:12]}"
        backend = _qdrant_backend(client, collection)
        backend.store.ensure_collection()
        yield backend
        client.delete_collection(collection)


def _unit(rng: np.random.Generator) -> np.ndarray:
    v = rng.standard_normal(512).astype(np.float32)
    return v / np.linalg.norm(v)


def _point(image_id: str, vector, *, copy_id=None, book_id=None, kind="cover_front") -> CoverPoint:
    return CoverPoint(
        image_id=image_id,
        vector=vector,
        copy_id=copy_id,
        book_id=book_id,
        kind=kind,
        sha256=hashlib.sha256(image_id.encode()).hexdigest(),
        model=MODEL,
    )


@pytest.fixture
def loaded(backend):
    """Ten unrelated unit vectors, stored."""
    rng = np.random.default_rng(7)
    points = [_point(backend.new_image(), _unit(rng)) for _ in range(10)]
    backend.store.upsert(points)
    return backend, points


def test_search_finds_the_point_itself_first(loaded):
    backend, points = loaded
    target = points[3]
    hits = backend.store.search(target.vector, limit=5)
    assert hits[0].image_id == target.image_id
    assert hits[0].score == pytest.approx(1.0, abs=1e-5)
    assert len(hits) == 5
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    # Random 512-d directions are nearly orthogonal.
    assert all(abs(h.score) < 0.3 for h in hits[1:])


def test_upsert_twice_overwrites_the_same_point(loaded):
    backend, points = loaded
    target = points[0]
    backend.store.upsert([target])
    assert backend.store.count() == 10

    moved = _unit(np.random.default_rng(99))
    updated = _point(
        target.image_id, moved, copy_id=backend.copy_id, book_id=backend.book_id, kind="cover_back"
    )
    backend.store.upsert([updated])
    assert backend.store.count() == 10
    hit = backend.store.search(moved, limit=1)[0]
    assert (hit.image_id, hit.copy_id, hit.book_id, hit.kind) == (
        target.image_id,
        backend.copy_id,
        backend.book_id,
        "cover_back",
    )
    assert hit.score == pytest.approx(1.0, abs=1e-5)
    old = backend.store.search(target.vector, limit=1, score_threshold=0.99)
    assert old == []


def test_score_threshold_drops_weak_matches(loaded):
    backend, points = loaded
    rng = np.random.default_rng(3)
    near = points[5].vector + 0.02 * _unit(rng)  # cosine ~0.9998 to points[5]
    hits = backend.store.search(near, limit=10, score_threshold=0.9)
    assert [h.image_id for h in hits] == [points[5].image_id]
    assert 0.99 < hits[0].score <= 1.0 + 1e-6


def test_excluded_ids_are_not_returned(loaded):
    backend, points = loaded
    target = points[2]
    hits = backend.store.search(target.vector, limit=3, exclude_image_ids=[target.image_id.upper()])
    assert target.image_id not in {h.image_id for h in hits}
    assert len(hits) == 3


def test_delete_removes_points(loaded):
    backend, points = loaded
    backend.store.delete([points[0].image_id, points[1].image_id])
    backend.store.delete([points[0].image_id])  # deleting twice is harmless
    assert backend.store.count() == 8
    hits = backend.store.search(points[0].vector, limit=10)
    assert points[0].image_id not in {h.image_id for h in hits}


def test_payload_fields_are_exact(backend):
    image_id = backend.new_image()
    vector = _unit(np.random.default_rng(11))
    point = _point(image_id, vector, copy_id=backend.copy_id, book_id=backend.book_id, kind="spine")
    other = _point(backend.new_image(), _unit(np.random.default_rng(12)))  # nulls travel too
    backend.store.upsert([point, other])
    (hit,) = backend.store.search(vector, limit=1)
    assert (hit.image_id, hit.copy_id, hit.book_id, hit.kind, hit.sha256) == (
        image_id,
        backend.copy_id,
        backend.book_id,
        "spine",
        point.sha256,
    )
    (hit,) = backend.store.search(other.vector, limit=1)
    assert (hit.copy_id, hit.book_id, hit.kind) == (None, None, "cover_front")
    if isinstance(backend.store, QdrantVectorStore):
        record = backend.store._client.retrieve(backend.store.collection, [QdrantVectorStore.point_id(image_id)])[0]
        assert set(record.payload) == {"image_id", "copy_id", "book_id", "kind", "sha256"}


def test_ensure_collection_is_idempotent(backend):
    backend.store.ensure_collection()
    assert backend.store.count() == 0
    assert backend.store.describe()


def test_bad_vectors_are_refused_with_the_image_named(backend):
    image_id = backend.new_image()
    with pytest.raises(ValueError, match=f"image {image_id}: vector has 3 dimensions, the store holds 512"):
        backend.store.upsert([_point(image_id, [0.1, 0.2, 0.3])])
    with pytest.raises(ValueError, match="all zeros"):
        backend.store.upsert([_point(image_id, np.zeros(512))])
    with pytest.raises(ValueError, match="is not a UUID"):
        backend.store.upsert([_point("cover-1", np.ones(512))])
    assert backend.store.count() == 0


def test_qdrant_point_ids_are_stable():
    # Pinned: a different id for the same image would leave the old point behind on the next rebuild.
    image_id = "3F2C0000-0000-4000-8000-000000000001"
    assert QdrantVectorStore.point_id(image_id) == "6c00ec6c-e232-5814-a78d-6af30eb9508d"
    assert QdrantVectorStore.point_id(image_id.lower()) == "6c00ec6c-e232-5814-a78d-6af30eb9508d"


def test_pgvector_writes_inside_the_callers_transaction(db_url):
    backend, close = _pg_backend(db_url)
    try:
        vector = _unit(np.random.default_rng(5))
        with psycopg.connect(db_url) as conn:
            backend.store.upsert_in(conn, [_point(backend.new_image(), vector)])
            assert backend.store.count() == 0  # not visible to other connections before the commit
            conn.commit()
            assert backend.store.count() == 1
            backend.store.upsert_in(conn, [_point(backend.new_image(), vector)])
            conn.rollback()
        assert backend.store.count() == 1
    finally:
        close()


def test_pgvector_reports_a_missing_table(empty_db_url):
    pool = open_pool(empty_db_url, max_size=1)
    try:
        with pytest.raises(RuntimeError, match=r"media.cover_embedding does not exist .*covr db migrate"):
            PgVectorStore(pool.connection).ensure_collection()
    finally:
        pool.close()


def test_pgvector_search_widens_ef_search_for_itself_only(db_url):
    """HNSW returns at most ef_search rows (pgvector's default: 40): 50 hits at once need the search's own ef_search,
    set on its connection for that search alone. The connection is fresh, so the setting is made before pgvector's
    library is loaded there, and must still reach it. Sequential scans are off there: at 60 rows the planner would
    rather sort them all than use the index."""
    backend, close = _pg_backend(db_url)
    try:
        rng = np.random.default_rng(11)
        backend.store.upsert([_point(backend.new_image(), _unit(rng)) for _ in range(60)])
        single = open_pool(make_conninfo(db_url, options="-c enable_seqscan=off"), max_size=1)
        try:
            assert len(PgVectorStore(single.connection, ef_search=10).search(_unit(rng), limit=50)) == 50
            with single.connection() as conn:
                assert conn.execute("show hnsw.ef_search").fetchone()["hnsw.ef_search"] == "40"
        finally:
            single.close()
    finally:
        close()
