"""The one Dagster Definitions object of Covr; workspace.yaml points here."""


import dagster as dg

from covr_core.platform.settings import Settings
from covr_pipelines.defs.dedup.assets import dedup_decisions, every_accepted_image_decided
from covr_pipelines.defs.identification.assets import book_identifications
from covr_pipelines.defs.ingestion.assets import every_object_recorded, uploaded_images
from covr_pipelines.defs.ingestion.sensors import build_reconcile_sensor, build_retry_sensor, build_upload_sensor
from covr_pipelines.defs.vectors.assets import cover_vectors
from covr_pipelines.defs.ledger import assets as ledger_assets, schedules as ledger_schedules
from covr_pipelines.defs.ledger.resources import build_ledger_resources
from covr_pipelines.defs.operations import checks as operations_checks
from covr_pipelines.defs.operations.sensors import build_run_failure_sensor
from covr_pipelines.defs.search import assets as search_assets, schedules as search_schedules
from covr_pipelines.defs.search.resources import build_search_resources
from covr_pipelines.resources import build_resources

INGEST_JOB = "ingest_job"

ingest_job = dg.define_asset_job(
    INGEST_JOB,
    selection=dg.AssetSelection.assets(uploaded_images, book_identifications, dedup_decisions, cover_vectors),
    description="Photos in object storage become identified books, copies and cover vectors.",
)

RETRY_IMAGE_JOB = "retry_image_job"
# The ingest job for one failed image, named by its id: launch it from the UI with the id in the config.
retry_image_job = dg.define_asset_job(
    RETRY_IMAGE_JOB,
    selection=dg.AssetSelection.assets(uploaded_images, book_identifications, dedup_decisions, cover_vectors),
    description="Re-run one failed image alone: set ops.uploaded_images.config.image_ids to its image id "
                "(as `covr ingest --retry IMAGE_ID` does).",
    config={"ops": {"uploaded_images": {"config": {"object_keys": [], "image_ids": ["IMAGE_ID"]}}}},
)


def build_definitions(settings: Settings) -> dg.Definitions:
    return dg.Definitions(
        assets=[uploaded_images, book_identifications, dedup_decisions, cover_vectors, ledger_assets.ledger_checkpoint,
                search_assets.copy_search_index, search_assets.cover_vector_index],
        asset_checks=[every_object_recorded, every_accepted_image_decided, ledger_assets.ledger_chains_verify,
                      operations_checks.no_upload_unprocessed, operations_checks.no_failed_image_forgotten,
                      operations_checks.vectors_match_embedded_images,
                      search_assets.documents_match_copies, search_assets.sample_matches_model],
        jobs=[ingest_job, retry_image_job, ledger_schedules.ledger_verification_job,
              ledger_schedules.ledger_checkpoint_job, search_schedules.search_reindex_job],
        schedules=[ledger_schedules.ledger_verification_schedule, ledger_schedules.ledger_checkpoint_schedule,
                   search_schedules.search_reindex_schedule],
        sensors=[
            build_upload_sensor(ingest_job, batch_size=settings.ingest_batch_size),
            build_reconcile_sensor(ingest_job, batch_size=settings.ingest_batch_size),
            build_retry_sensor(ingest_job, batch_size=settings.ingest_batch_size),
            build_run_failure_sensor(settings),
        ],
        resources=build_resources(settings) | build_ledger_resources(settings) | build_search_resources(settings),
    )


@dg.definitions
def defs() -> dg.Definitions:
    """Settings are read here, when Dagster loads the code location, never at import time."""
    return build_definitions(Settings())
