"""The one Definitions object loads, and every asset, check, sensor and job resolves."""

from __future__ import annotations

import importlib

import dagster as dg
import yaml

from covr_core.platform.settings import Settings
from covr_pipelines.definitions import INGEST_JOB, build_definitions

ASSETS = {"uploaded_images", "book_identifications", "dedup_decisions", "cover_vectors"}
LEDGER_ASSETS = {"ledger_checkpoint"}
SEARCH_ASSETS = {"copy_search_index", "cover_vector_index"}
CHECKS = {("uploaded_images", "every_object_recorded"), ("dedup_decisions", "every_accepted_image_decided"),
          ("ledger_checkpoint", "ledger_chains_verify"), ("uploaded_images", "no_upload_unprocessed"),
          ("uploaded_images", "no_failed_image_forgotten"), ("cover_vectors", "vectors_match_embedded_images"),
          ("copy_search_index", "documents_match_copies"), ("copy_search_index", "sample_matches_model")}
SCHEDULES = {"ledger_verification_schedule", "ledger_checkpoint_schedule", "search_reindex_schedule"}
SENSORS = {"new_uploads_sensor", "upload_reconcile_sensor", "failed_images_retry_sensor"}
RUN_FAILURE_SENSORS = {"run_failure_alert_sensor"}


def _assert_complete(defs: dg.Definitions) -> None:
    repo = defs.get_repository_def()
    keys = {key.to_user_string() for key in repo.asset_graph.get_all_asset_keys()}
    assert keys == ASSETS | LEDGER_ASSETS | SEARCH_ASSETS
    assert {s.name for s in repo.schedule_defs} == SCHEDULES
    assert {(c.asset_key.to_user_string(), c.name) for c in repo.asset_graph.asset_check_keys} == CHECKS
    assert {s.name for s in repo.sensor_defs} == SENSORS | RUN_FAILURE_SENSORS
    job = defs.resolve_job_def(INGEST_JOB)
    assert {n.name for n in job.nodes} >= ASSETS
    assert {n.name for n in defs.resolve_job_def("retry_image_job").nodes} >= ASSETS
    for sensor in repo.sensor_defs:
        if sensor.name in SENSORS:
            assert sensor.job_name == INGEST_JOB
    for key in ASSETS | LEDGER_ASSETS | SEARCH_ASSETS:  # an owner for every asset, its context's team
        spec = repo.asset_graph.get(dg.AssetKey(key))
        assert spec.owners and spec.owners[0] == f"team:{spec.group_name}"
    dg.Definitions.validate_loadable(defs)


def test_built_definitions_load_and_resolve(tmp_path):
    _assert_complete(build_definitions(Settings(home=tmp_path)))


def test_the_definitions_workspace_yaml_loads_resolve(tmp_path, monkeypatch):
    """What `dagster dev -w workspace.yaml` loads: the module and attribute it names, settings from the environment."""
    with open("workspace.yaml") as f:
        target = yaml.safe_load(f)["load_from"][0]["python_module"]
    monkeypatch.setenv("COVR_HOME", str(tmp_path))
    loaded = getattr(importlib.import_module(target["module_name"]), target["attribute"])

    defs = loaded() if not isinstance(loaded, dg.Definitions) else loaded
    _assert_complete(defs)
    assert defs.resources["postgres"].home == str(tmp_path.absolute())
