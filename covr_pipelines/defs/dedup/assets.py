"""What each identified photo means for the catalog: a new book, a new copy, a known copy, or a suspected exchange."""


from collections import Counter

import dagster as dg

from covr_core.dedup.rules import Thresholds, decide
from covr_core.dedup.failures import is_database_outage, resolve_failure
from covr_core.dedup.ingest import apply_outcome, batch_images, cover_matches, gather_evidence, is_decided, lock_uploader
from covr_core.media.neardup import find_near_duplicates
from covr_pipelines.defs.ingestion.assets import batch_run_id, fail_image
from covr_pipelines.resources import IngestPolicyResource, PostgresResource

GROUP = "dedup"


def _decide_one(conn, image: dict, thresholds: Thresholds, run_id: str):
    """One image's decision as one transaction: lock the uploader, read the evidence, apply and record it."""
    image_id = str(image["image_id"])
    identification = conn.execute(
        "select * from ingest.identification where image_id = %s", (image_id,)
    ).fetchone() or {}
    with conn.transaction():
        lock_uploader(conn, str(image["uploader_id"]))
        if is_decided(conn, image_id):  # another run decided it while this one waited for the lock
            return None, None
        near = find_near_duplicates(conn, int(image["phash"]), thresholds.phash_copy_distance)
        covers = cover_matches(conn, image_id, thresholds.embedding_same_cover)
        evidence = gather_evidence(conn, image, identification, near, thresholds, covers)
        outcome = decide(evidence)
        applied = apply_outcome(
            conn, image=image, identification=identification, evidence=evidence, outcome=outcome, run_id=run_id,
        )
        resolve_failure(conn, image["object_key"], "dedup")
    return outcome, applied


@dg.asset(group_name=GROUP, owners=[f"team:{GROUP}"], kinds={"python", "postgres"}, deps=["book_identifications"])
def dedup_decisions(
    context: dg.AssetExecutionContext, postgres: PostgresResource, policy: IngestPolicyResource
) -> dg.MaterializeResult:
    """Resolve each identified photo into new_book, new_copy, existing_copy, exchange_suspected or ignore."""
    thresholds = Thresholds(
        phash_copy_distance=policy.phash_copy_distance, embedding_same_cover=policy.embedding_same_cover
    )
    decisions = Counter()
    failed = []
    run_id = batch_run_id(context)
    with postgres.connection() as conn:
        # In upload order, one transaction each: a later photo in the batch sees the copies earlier ones made.
        for image in batch_images(conn, run_id, missing="dedup"):
            image_id, key = str(image["image_id"]), image["object_key"]
            try:
                outcome, applied = _decide_one(conn, image, thresholds, run_id)
            except Exception as exc:
                if is_database_outage(exc):
                    raise
                failed.append(fail_image(context, conn, image, "dedup", exc, run_id))
                continue
            if applied is None:
                context.log.info(f"image {image_id} ({key}): already decided by another run")
                continue
            decisions[applied.decision] += 1
            context.log.info(
                f"image {image_id} ({key}): {applied.decision} by rule {outcome.rule} "
                f"({applied.match_reason}), book {applied.book_id}, copy {applied.copy_id}"
            )
    return dg.MaterializeResult(metadata={
        "decided": sum(decisions.values()), **dict(decisions),
        "failed": len(failed), "failures": dg.MetadataValue.json(failed),
    })


@dg.asset_check(
    asset=dedup_decisions,
    description="Every identified image of the run's batch has a decision, or a recorded failure to retry.",
)
def every_accepted_image_decided(
    context: dg.AssetCheckExecutionContext, postgres: PostgresResource
) -> dg.AssetCheckResult:
    with postgres.connection() as conn:
        row = conn.execute(
            """
            select count(*) filter (where not decided and not failed) as undecided,
                   count(*) filter (where failed) as failed,
                   count(*) as identified
            from (
                select exists (select 1 from ingest.dedup_result r where r.image_id = i.image_id) as decided,
                       exists (select 1 from ingest.failure f
                               where f.object_key = i.object_key and f.resolved_at is null) as failed
                from ingest.batch b
                cross join unnest(b.object_keys) as k(object_key)
                join media.image i on i.object_key = k.object_key
                where b.run_id = %s and i.status = 'accepted'
                  and exists (select 1 from ingest.identification d where d.image_id = i.image_id)
            ) per_image
            """,
            (batch_run_id(context.op_execution_context),),
        ).fetchone()
    return dg.AssetCheckResult(
        passed=row["undecided"] == 0,
        metadata={"identified": row["identified"], "undecided": row["undecided"], "failed": row["failed"]},
    )
