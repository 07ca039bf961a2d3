"""The one Definitions object loads, and every asset, check, sensor and job resolves."""

from __future__ import annotations

import dagster as dg

from covr_core.settings import Settings
from covr_pipelines.definitions import INGEST_JOB, build_definitions


def test_definitions_load_and_resolve(tmp_path):
    defs = build_definitions(Settings(home=tmp_path))
    repo = defs.get_repository_def()

    asset_keys = {key.to_user_string() for key in repo.asset_graph.get_all_asset_keys()}
    assert {"uploaded_images", "book_identifications", "dedup_decisions", "cover_vectors"} <= asset_keys
    assert defs.resolve_job_def(INGEST_JOB).name == INGEST_JOB
    assert {s.name for s in repo.sensor_defs} == {"new_uploads_sensor"}
    assert len(list(repo.asset_graph.asset_check_keys)) >= 2
    dg.Definitions.validate_loadable(defs)


def test_workspace_points_at_the_definitions_module():
    import yaml

    with open("workspace.yaml") as f:
        workspace = yaml.safe_load(f)
    target = workspace["load_from"][0]["python_module"]
    assert target["module_name"] == "covr_pipelines.definitions"
    assert target["attribute"] == "defs"
