"""Cover embeddings inside the ingest job: stored per image, linked to the decided copy, synced to Qdrant."""

from __future__ import annotations

import dagster as dg
import pytest
from qdrant_client import QdrantClient

from covr_core.dedup.ingest import cover_matches
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


def test_embeddings_are_stored_and_linked_to_copies(conn, catalog, tmp_path, db_url, user, clip_settings_kw):
    settings = Settings(home=tmp_path / "covr", database_url=db_url, **clip_settings_kw)
    resources = build_resources(settings)
    store = resources["object_store"].store()
    gina = user("gina")
    keys = [upload(store, gina, cover_photo(catalog[0], seed=21, size=(2400, 1800))),
            upload(store, gina, cover_photo(catalog[3], seed=22, size=(2400, 1800)))]

    result = dg.materialize(ASSETS, resources=resources, run_config=ingest_run_request(keys).run_config)

    assert result.success
    rows = conn.execute(
        """
        select e.model, e.copy_id, i.copy_id as image_copy_id, vector_dims(e.embedding) as dims
        from media.cover_embedding e join media.image i using (image_id)
        """
    ).fetchall()
    assert len(rows) == 2
    assert all(r["dims"] == 512 and r["model"].endswith("random-init") for r in rows)
    assert all(r["copy_id"] is not None and r["copy_id"] == r["image_copy_id"] for r in rows)
    metadata = result.asset_materializations_for_node("book_identifications")[0].metadata
    assert metadata["embeddings"].value == "on"

    # Cover similarity against images attached to copies: the dedup asset's "same cover" signal.
    first, second = (conn.execute("select image_id, copy_id from media.image where object_key = %s", (k,))
                     .fetchone() for k in keys)
    matches = cover_matches(conn, str(first["image_id"]), min_similarity=-1.0)
    assert [(m.image_id, m.copy_id) for m in matches] == [(str(second["image_id"]), str(second["copy_id"]))]
    assert -1.0 <= matches[0].similarity <= 1.0
    assert cover_matches(conn, str(first["image_id"]), min_similarity=1.01) == ()

    # The Qdrant read model is rebuilt from Postgres; qdrant-client's local mode stands in for the server.
    client = QdrantClient(location=":memory:")
    qdrant = QdrantVectorStore(client)

    class LocalQdrant(VectorStoreResource):
        def get_store(self, postgres):
            return qdrant

    summary = sync_vectors(dg.build_op_context(), resources["postgres"], LocalQdrant(), run_id=None)
    assert (summary["synced"], summary["points"]) == (2, 2)
    hit = qdrant.search(qdrant_vector(conn), limit=1)[0]
    assert hit.copy_id is not None and hit.book_id is not None


def qdrant_vector(conn):
    return conn.execute("select embedding::real[] as v from media.cover_embedding limit 1").fetchone()["v"]
