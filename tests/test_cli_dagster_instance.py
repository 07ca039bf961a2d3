"""CLI runs land in the persistent Dagster instance that `make dagster` shows, not an ephemeral one."""

from __future__ import annotations

import dagster as dg
import pytest

from covr_core.platform.settings import Settings
from covr_pipelines.cli import main
from covr_pipelines.sample_photos import jpeg_bytes, render_cover, valid_isbn13


@pytest.fixture
def photo(tmp_path):
    path = tmp_path / "cover.jpg"
    path.write_bytes(jpeg_bytes(render_cover("The Quiet Orchard", "Maria Lindqvist", valid_isbn13(203), seed=1)))
    return path


def _runs(dagster_home):
    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        return instance.get_runs()


def test_covr_ingest_records_its_run_in_covr_home_dagster(db_url, tmp_path, monkeypatch, capsys, photo):
    monkeypatch.setenv("DATABASE_URL", db_url)
    monkeypatch.setenv("COVR_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("DAGSTER_HOME", raising=False)

    assert main(["ingest", "--as", "alice", str(photo), "--json"]) == 0

    runs = _runs(tmp_path / "home" / "dagster")
    assert [(run.job_name, run.status) for run in runs] == [("ingest_job", dg.DagsterRunStatus.SUCCESS)]
    assert main(["ingest", "--as", "alice", str(photo), "--json"]) == 0
    assert len(_runs(tmp_path / "home" / "dagster")) == 2  # the same instance, opened again


def test_dagster_home_wins_over_covr_home(db_url, tmp_path, monkeypatch, photo):
    monkeypatch.setenv("DATABASE_URL", db_url)
    monkeypatch.setenv("COVR_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "elsewhere"))

    assert main(["ingest", "--as", "bob", str(photo)]) == 0

    assert [run.status for run in _runs(tmp_path / "elsewhere")] == [dg.DagsterRunStatus.SUCCESS]
    assert not (tmp_path / "home" / "dagster").exists()


def test_settings_dagster_home_is_absolute(tmp_path, monkeypatch):
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    monkeypatch.chdir(tmp_path)

    assert Settings(home="relative").dagster_home == tmp_path / "relative" / "dagster"
    monkeypatch.setenv("DAGSTER_HOME", "dg")
    assert Settings(home="relative").dagster_home == tmp_path / "dg"
