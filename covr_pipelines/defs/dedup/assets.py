"""What each identified photo means for the catalog: a new book, a new copy, a known copy, or a suspected exchange."""


from collections import Counter

import dagster as dg

from covr_core.dedup import Thresholds, decide
from covr_core.ingest import apply_outcome, batch_images, cover_matches, gather_evidence
from covr_core.neardup import find_near_duplicates
from covr_pipelines.resources import IngestPolicyResource, PostgresResource

GROUP = "dedup"


@dg.asset(group_name=GROUP, kinds={"python", "postgres"}, deps=["book_identifications"])
def dedup_decisions(
    context: dg.AssetExecutionContext, postgres: PostgresResource, policy: IngestPolicyResource
) -> dg.MaterializeResult:
    """Resolve each identified photo into new_book, new_copy, existing_copy, exchange_suspected or ignore."""
    thresholds = Thresholds(
        phash_copy_distance=policy.phash_copy_distance, embedding_same_cover=policy.embedding_same_cover
    )
    decisions = Counter()
    with postgres.connection() as conn:
        # In upload order, one transaction each: a later photo in the batch sees the copies earlier ones made.
        for image in batch_images(conn, context.run_id, missing="dedup"):
            identification = conn.execute(
                "select * from ingest.identification where image_id = %s", (image["image_id"],)
            ).fetchone() or {}
            with conn.transaction():
                near = find_near_duplicates(conn, int(image["phash"]), thresholds.phash_copy_distance)
                covers = cover_matches(conn, str(image["image_id"]), thresholds.embedding_same_cover)
                evidence = gather_evidence(conn, image, identification, near, thresholds, covers)
                outcome = decide(evidence)
                applied = apply_outcome(
                    conn, image=image, identification=identification, evidence=evidence, outcome=outcome,
                    run_id=context.run_id,
                )
            decisions[applied.decision] += 1
            context.log.info(
                f"image {image['image_id']} ({image['object_key']}): {applied.decision} by rule {outcome.rule} "
                f"({applied.match_reason}), book {applied.book_id}, copy {applied.copy_id}"
            )
    return dg.MaterializeResult(metadata={"decided": sum(decisions.values()), **dict(decisions)})


@dg.asset_check(asset=dedup_decisions, description="Every accepted, identified-or-not image has a decision.")
def every_accepted_image_decided(postgres: PostgresResource) -> dg.AssetCheckResult:
    with postgres.connection() as conn:
        row = conn.execute(
            """
            select count(*) as n from media.image i
            where i.status = 'accepted'
              and exists (select 1 from ingest.identification d where d.image_id = i.image_id)
              and not exists (select 1 from ingest.dedup_result r where r.image_id = i.image_id)
            """
        ).fetchone()
    return dg.AssetCheckResult(passed=row["n"] == 0, metadata={"undecided": row["n"]})
