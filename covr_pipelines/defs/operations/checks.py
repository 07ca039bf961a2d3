"""Asset checks an operator reads as the pipeline's health: nothing stuck, nothing forgotten, read models whole."""

from __future__ import annotations

import dagster as dg

from covr_pipelines.resources import ObjectStoreResource, PostgresResource, VectorStoreResource

STUCK_AFTER_MINUTES = 10

UNPROCESSED_SQL = """
select object_key from unnest(%s::text[]) as k(object_key)
where not exists (select 1 from media.image i where i.object_key = k.object_key)
  and not exists (select 1 from ingest.failure f where f.object_key = k.object_key)
"""

FORGOTTEN_FAILURES_SQL = """
select object_key, image_id::text as image_id, reason, attempts, first_failed_at from ingest.failure
where resolved_at is null and next_attempt_at is null and last_failed_at < now() - interval '1 day'
order by first_failed_at
"""


@dg.asset_check(asset="uploaded_images", blocking=False,
                description=f"No upload has waited more than {STUCK_AFTER_MINUTES} minutes without an image row or a "
                            "recorded failure: the sensor or the runs are stuck.")
def no_upload_unprocessed(postgres: PostgresResource, object_store: ObjectStoreResource) -> dg.AssetCheckResult:
    from datetime import UTC, datetime, timedelta

    store = object_store.store()
    old = [o.key for o in store.list_since("uploads/", None)
           if o.last_modified < datetime.now(UTC) - timedelta(minutes=STUCK_AFTER_MINUTES)]
    with postgres.connection() as conn:
        stuck = [r["object_key"] for r in conn.execute(UNPROCESSED_SQL, (old,)).fetchall()]
    return dg.AssetCheckResult(passed=not stuck, metadata={
        "uploads_older_than_10_min": len(old), "unprocessed": len(stuck),
        "examples": dg.MetadataValue.json(stuck[:20])})


@dg.asset_check(asset="uploaded_images", blocking=False,
                description="No failed image is older than a day with no retry left: each needs `covr ingest "
                            "--retry IMAGE_ID` (or retry_image_job) once its cause is fixed.")
def no_failed_image_forgotten(postgres: PostgresResource) -> dg.AssetCheckResult:
    with postgres.connection() as conn:
        rows = conn.execute(FORGOTTEN_FAILURES_SQL).fetchall()
    return dg.AssetCheckResult(passed=not rows, metadata={
        "forgotten": len(rows),
        "images": dg.MetadataValue.md("\n".join(
            ["| image | object key | attempts | reason |", "|---|---|---|---|"]
            + [f"| {r['image_id'] or '-'} | `{r['object_key']}` | {r['attempts']} | {r['reason']} |" for r in rows[:50]]
        ) if rows else "none")})


@dg.asset_check(asset="cover_vectors", blocking=False,
                description="The vector read model holds one point per embedded image (media.cover_embedding).")
def vectors_match_embedded_images(postgres: PostgresResource, vectors: VectorStoreResource) -> dg.AssetCheckResult:
    with postgres.connection() as conn:
        embedded = conn.execute("select count(*) as n from media.cover_embedding").fetchone()["n"]
    points = vectors.get_store(postgres).count()
    return dg.AssetCheckResult(passed=points == embedded, metadata={"embedded_images": embedded, "points": points})
