"""Nightly: rebuild the copies index and the cover vectors, and check them against the model."""

from __future__ import annotations

import dagster as dg

from covr_pipelines.defs.search.assets import copy_search_index, cover_vector_index

search_reindex_job = dg.define_asset_job(
    "search_reindex_job",
    selection=dg.AssetSelection.assets(copy_search_index, cover_vector_index),
    description="Rebuild the copies index and the cover vectors from Postgres and swap them in, then check them.",
)

search_reindex_schedule = dg.ScheduleDefinition(
    name="search_reindex_schedule", job=search_reindex_job, cron_schedule="30 3 * * *",
    default_status=dg.DefaultScheduleStatus.RUNNING,
)
