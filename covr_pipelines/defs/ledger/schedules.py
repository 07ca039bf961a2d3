"""Hourly: verify every chain (the asset check alone), and write the next signed checkpoint."""

from __future__ import annotations

import dagster as dg

from covr_pipelines.defs.ledger.assets import ledger_checkpoint

ledger_verification_job = dg.define_asset_job(
    "ledger_verification_job",
    selection=dg.AssetSelection.checks_for_assets(ledger_checkpoint),
    description="Verify every ledger chain against its head and the latest signed checkpoint.",
)
ledger_checkpoint_job = dg.define_asset_job(
    "ledger_checkpoint_job",
    selection=dg.AssetSelection.assets(ledger_checkpoint),
    description="Verify, then sign and export a checkpoint over every chain's head.",
)

ledger_verification_schedule = dg.ScheduleDefinition(
    name="ledger_verification_schedule", job=ledger_verification_job, cron_schedule="15 * * * *",
    default_status=dg.DefaultScheduleStatus.RUNNING,
)
ledger_checkpoint_schedule = dg.ScheduleDefinition(
    name="ledger_checkpoint_schedule", job=ledger_checkpoint_job, cron_schedule="45 * * * *",
    default_status=dg.DefaultScheduleStatus.RUNNING,
)
