"""Running the ingest assets in tests: put uploads in the store, materialize the job's assets, read the outcome."""

from __future__ import annotations

import uuid

import dagster as dg

from covr_pipelines.defs.dedup.assets import dedup_decisions, every_accepted_image_decided
from covr_pipelines.defs.identification.assets import book_identifications
from covr_pipelines.defs.ingestion.assets import every_object_recorded, uploaded_images
from covr_pipelines.defs.ingestion.sensors import ingest_run_request
from covr_pipelines.defs.vectors.assets import cover_vectors

ASSETS = [uploaded_images, book_identifications, dedup_decisions, cover_vectors]
ASSETS_WITH_CHECKS = [*ASSETS, every_object_recorded, every_accepted_image_decided]


def upload(store, user_id: str, data: bytes, ext: str = "jpg") -> str:
    """Put data where a member's upload lands; returns its object key."""
    key = f"uploads/{user_id}/{uuid.uuid4()}.{ext}"
    store.put(key, data)
    return key


def run_ingest(resources, keys, instance=None):
    """One successful run of the ingest assets and their checks over keys, as the sensor would request it."""
    result = dg.materialize(
        ASSETS_WITH_CHECKS,
        resources=resources,
        run_config=ingest_run_request(keys).run_config,
        instance=instance,
    )
    assert result.success
    return result


def images_by_key(conn, keys):
    rows = conn.execute(
        "select * from read_model.ingest_decision where object_key = any(%s)", (keys,)
    ).fetchall()
    return {r["object_key"]: r for r in rows}
