"""The checkpoint asset signs and exports; the hourly verification's asset check fails naming copy and entry."""

from __future__ import annotations

import json

import dagster as dg
import psycopg
import pytest
from psycopg.rows import dict_row

from covr_core.ledger import chain, checkpoint
from covr_pipelines.definitions import build_definitions
from covr_pipelines.defs.ledger.assets import ledger_chains_verify, ledger_checkpoint
from covr_pipelines.defs.ledger.resources import build_ledger_resources
from covr_pipelines.resources import build_resources
from tests.core.ledger_support import as_attacker, make_copy, make_user


@pytest.fixture
def keyed(settings):
    path = settings.home / "ledger" / "signing-key.pem"
    path.parent.mkdir(parents=True)
    path.write_bytes(checkpoint.generate_private_key_pem())
    return settings


@pytest.fixture
def all_resources(keyed):
    return build_resources(keyed) | build_ledger_resources(keyed)


@pytest.fixture
def copies(db_url):
    with psycopg.connect(db_url, row_factory=dict_row, autocommit=True) as conn:
        alice = make_user(conn, "alice")
        ids = sorted(make_copy(conn, alice) for _ in range(4))
        for c in ids:
            chain.append(conn, copy_id=c, entry_type="copy_created")
            chain.append(conn, copy_id=c, entry_type="request_created")
    return ids


def _check(result) -> dg.AssetCheckEvaluation:
    [evaluation] = result.get_asset_check_evaluations()
    return evaluation


def test_checkpoint_asset_signs_exports_and_its_check_passes(all_resources, keyed, copies):
    result = dg.materialize([ledger_checkpoint, ledger_chains_verify], resources=all_resources)
    assert result.success
    meta = result.get_asset_materialization_events()[0].materialization.metadata
    assert (meta["checkpoint_id"].value, meta["tree_size"].value) == (1, 4)
    doc = json.loads((keyed.objects_dir / "ledger" / "checkpoints" / "000000000001.json").read_text())
    assert json.loads(doc["body"])["tree_size"] == 4
    assert _check(result).passed


def test_hourly_verification_check_fails_naming_the_copy_and_entry(all_resources, keyed, copies, db_url):
    defs = build_definitions(keyed)
    dg.materialize([ledger_checkpoint], resources=all_resources)
    with psycopg.connect(db_url, row_factory=dict_row, autocommit=True) as conn:
        as_attacker(conn, "update ledger.entry set ts = ts + interval '1 second' where copy_id = %s and seq = 2",
                    (copies[2],))
    job = defs.resolve_job_def("ledger_verification_job")
    result = job.execute_in_process(resources=all_resources, raise_on_error=False)
    evaluation = _check(result)
    assert not evaluation.passed
    assert evaluation.description.startswith(f"copy {copies[2]} entry 2: content mismatch")
    assert evaluation.metadata["first_copy_id"].value == copies[2]
    assert evaluation.metadata["first_seq"].value == 2
    # And the checkpoint asset refuses to sign over it.
    refused = dg.materialize([ledger_checkpoint], resources=all_resources, raise_on_error=False)
    assert not refused.success
    with psycopg.connect(db_url, autocommit=True) as conn:
        assert conn.execute("select count(*) from ledger.checkpoint").fetchone()[0] == 1


def test_schedules_are_hourly(keyed):
    defs = build_definitions(keyed)
    repo = defs.get_repository_def()
    crons = {s.name: s.cron_schedule for s in repo.schedule_defs if s.name.startswith("ledger_")}
    assert crons == {"ledger_verification_schedule": "15 * * * *", "ledger_checkpoint_schedule": "45 * * * *"}
