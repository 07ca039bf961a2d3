"""Cover embeddings inside the ingest job: stored per image, linked to the decided copy, synced to Qdrant."""

from __future__ import annotations

from dataclasses import replace
from io import BytesIO

import dagster as dg
import pytest
from PIL import Image
from qdrant_client import QdrantClient

from covr_core.dedup.ingest import cover_matches
from covr_core.dedup.rules import DedupEvidence, Thresholds, decide
from covr_core.platform.settings import Settings
from covr_core.vectors.stores import QdrantVectorStore
from covr_pipelines.defs.ingestion.sensors import ingest_run_request
from covr_pipelines.defs.vectors.assets import sync_vectors
from covr_pipelines.resources import VectorStoreResource, build_resources
from tests.photos import cover_photo
from tests.pipelines.ingest_runs import ASSETS, upload


@pytest.fixture(scope="module")
def clip_settings_kw():
    return {"clip_allow_random": True, "clip_quantize": False}


def _cropped_and_reencoded(jpeg: bytes) -> bytes:
    """The same photo with 3% cut from each side and saved again at quality 70: the same cover, other bytes."""
    with Image.open(BytesIO(jpeg)) as photo:
        w, h = photo.size
        cropped = photo.crop((w * 3 // 100, h * 3 // 100, w - w * 3 // 100, h - h * 3 // 100))
    buf = BytesIO()
    cropped.save(buf, "JPEG", quality=70)
    return buf.getvalue()


def test_embeddings_are_stored_and_linked_to_copies(conn, catalog, tmp_path, db_url, user, clip_settings_kw):
    settings = Settings(home=tmp_path / "covr", database_url=db_url, **clip_settings_kw)
    resources = build_resources(settings)
    store = resources["object_store"].store()
    gina = user("gina")
    orchard = cover_photo(catalog[0], seed=21, size=(2400, 1800))
    keys = [upload(store, gina, orchard), upload(store, gina, _cropped_and_reencoded(orchard)),
            upload(store, gina, cover_photo(catalog[3], seed=22, size=(2400, 1800)))]

    result = dg.materialize(ASSETS, resources=resources, run_config=ingest_run_request(keys).run_config)

    assert result.success
    rows = conn.execute(
        """
        select e.model, e.copy_id, i.copy_id as image_copy_id, vector_dims(e.embedding) as dims
        from media.cover_embedding e join media.image i using (image_id)
        """
    ).fetchall()
    assert len(rows) == 3
    assert all(r["dims"] == 512 and r["model"].endswith("random-init") for r in rows)
    assert all(r["copy_id"] is not None and r["copy_id"] == r["image_copy_id"] for r in rows)
    metadata = result.asset_materializations_for_node("book_identifications")[0].metadata
    assert metadata["embeddings"].value == "on"

    # Cover similarity against images attached to copies, at the threshold the dedup asset uses. Random weights
    # score a photo's layout and colours, not what the cover shows, so "the same cover" here is the same photo
    # cropped and re-encoded, and the other cover is one in another style; the threshold itself is tested on
    # exact vectors in test_the_same_cover_threshold_on_stored_vectors.
    orchard_image, cropped_image, ledger_image = (
        conn.execute("select image_id::text, copy_id::text from media.image where object_key = %s", (k,)).fetchone()
        for k in keys)
    threshold = settings.embedding_same_cover
    assert threshold == 0.95
    [same] = cover_matches(conn, orchard_image["image_id"], threshold)
    assert (same.image_id, same.copy_id) == (cropped_image["image_id"], orchard_image["copy_id"])
    assert same.similarity >= threshold
    assert [m.image_id for m in cover_matches(conn, cropped_image["image_id"], threshold)] == [
        orchard_image["image_id"]]
    assert cover_matches(conn, ledger_image["image_id"], threshold) == ()
    others = cover_matches(conn, ledger_image["image_id"], min_similarity=-1.0)
    assert len(others) == 2 and all(m.similarity < threshold for m in others)

    # The Qdrant read model is rebuilt from Postgres; qdrant-client's local mode stands in for the server.
    client = QdrantClient(location=":memory:")
    qdrant = QdrantVectorStore(client)

    class LocalQdrant(VectorStoreResource):
        def get_store(self, postgres):
            return qdrant

    summary = sync_vectors(dg.build_op_context(), resources["postgres"], LocalQdrant(), run_id=None)
    assert (summary["synced"], summary["points"]) == (3, 3)
    hit = qdrant.search(qdrant_vector(conn), limit=1)[0]
    assert hit.copy_id is not None and hit.book_id is not None


def qdrant_vector(conn):
    return conn.execute("select embedding::real[] as v from media.cover_embedding limit 1").fetchone()["v"]


def _unit_vector_at(similarity: float, axis: int) -> list[float]:
    """A 512-d unit vector whose cosine similarity to the first axis is exactly `similarity`."""
    vector = [0.0] * 512
    vector[0], vector[axis] = similarity, (1 - similarity**2) ** 0.5
    return vector


def test_the_same_cover_threshold_on_stored_vectors(conn, catalog, user):
    """cover_matches in real pgvector, around the 0.95 threshold: vectors stored directly, similarities exact."""
    hana, ivan = user("hana"), user("ivan")
    book_ids = [conn.execute("select book_id::text from catalog.book where isbn13 = %s",
                             (b["isbn13"],)).fetchone()["book_id"] for b in catalog]

    def image(n: int, *, similarity: float, book: int | None) -> str:
        copy_id = None if book is None else conn.execute(
            "insert into catalog.copy (book_id, owner_id, current_holder_id) values (%s, %s, %s) "
            "returning copy_id::text", (book_ids[book], ivan, ivan)).fetchone()["copy_id"]
        image_id = conn.execute(
            """
            insert into media.image (object_key, uploader_id, status, sha256, phash, byte_size, format, copy_id)
            values (%s, %s, 'accepted', %s, %s, 1000, 'jpeg', %s) returning image_id::text
            """,
            (f"uploads/{hana}/{n}.jpg", hana if book is None else ivan, f"{n:064x}", n, copy_id),
        ).fetchone()["image_id"]
        conn.execute(
            "insert into media.cover_embedding (image_id, model, embedding, copy_id, book_id, kind, sha256) "
            "values (%s, 'test', %s::vector, %s, %s, 'cover_front', %s)",
            (image_id, str(_unit_vector_at(similarity, n)), copy_id, None if book is None else book_ids[book],
             f"{n:064x}"),
        )
        return image_id

    new_photo = image(1, similarity=1.0, book=None)
    close = image(2, similarity=0.97, book=0)
    just_above = image(3, similarity=0.951, book=1)
    just_below = image(4, similarity=0.949, book=2)
    image(5, similarity=0.99, book=None)  # the closest, but attached to no copy: no book to name
    image(6, similarity=0.2, book=3)
    conn.commit()
    threshold = Thresholds().embedding_same_cover

    matches = cover_matches(conn, new_photo, threshold)

    assert [(m.image_id, m.book_id, m.holder_id, m.similarity) for m in matches] == [
        (close, book_ids[0], ivan, 0.97), (just_above, book_ids[1], ivan, 0.951)]
    [below] = [m for m in cover_matches(conn, new_photo, 0.9) if m.image_id == just_below]
    assert below.similarity == 0.949
    # What the dedup rules make of it: nothing else named a book, so the closest same cover does.
    evidence = DedupEvidence(
        image_id=new_photo, uploader_id=hana, exact_match_image_id=None, phash_matches=(),
        identified_book_id=None, identification_source=None, book_in_catalog=False, uploader_copy_id=None,
        other_copies=(), can_create_book=False, embedding_matches=matches)
    assert (decide(evidence).decision, decide(evidence).match_reason) == ("new_copy", "embedding_similarity")
    assert decide(replace(evidence, embedding_matches=(below,))).rule == 8  # just below: no book named
