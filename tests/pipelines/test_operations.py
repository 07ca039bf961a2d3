"""What an operator acts on: the health checks on real ingested data, the run-failure alert, a failed image re-run."""

from __future__ import annotations

import os
import uuid
from datetime import UTC, datetime, timedelta

import dagster as dg
import pytest
from qdrant_client import QdrantClient

from covr_core.platform.settings import Settings
from covr_core.vectors.stores import QdrantVectorStore
from covr_pipelines.definitions import RETRY_IMAGE_JOB, build_definitions
from covr_pipelines.defs.identification.assets import book_identifications
from covr_pipelines.defs.ingestion.assets import uploaded_images
from covr_pipelines.defs.operations.checks import (no_failed_image_forgotten, no_upload_unprocessed,
                                                   vectors_match_embedded_images)
from covr_pipelines.defs.operations.sensors import build_run_failure_sensor
from covr_pipelines.defs.vectors.assets import sync_vectors
from covr_pipelines.resources import VectorStoreResource, build_resources
from tests.photos import cover_photo
from tests.pipelines.ingest_runs import ASSETS, images_by_key, run_ingest, upload


@pytest.fixture
def instance(tmp_path):
    (tmp_path / "dagster").mkdir()
    with dg.instance_for_test(temp_dir=str(tmp_path / "dagster")) as instance:
        yield instance


def _aged(store, key: str, minutes: float) -> None:
    when = (datetime.now(UTC) - timedelta(minutes=minutes)).timestamp()
    os.utime(store.root / key, (when, when))


# --- no_upload_unprocessed ---------------------------------------------------------------------------------------

def test_an_upload_waiting_past_ten_minutes_fails_the_check_until_it_is_ingested(conn, catalog, resources, store,
                                                                                  user):
    alice = user("alice")
    stuck = upload(store, alice, cover_photo(catalog[0], seed=1))
    young = upload(store, alice, cover_photo(catalog[1], seed=2))
    _aged(store, stuck, 20)
    _aged(store, young, 5)  # still the sensor's to pick up: not stuck yet

    failing = no_upload_unprocessed(postgres=resources["postgres"], object_store=resources["object_store"])

    assert not failing.passed
    assert failing.metadata["unprocessed"].value == 1 and failing.metadata["examples"].value == [stuck]

    run_ingest(resources, [stuck])
    passing = no_upload_unprocessed(postgres=resources["postgres"], object_store=resources["object_store"])
    assert passing.passed and passing.metadata["uploads_older_than_10_min"].value == 1


# --- a failed image: no_failed_image_forgotten and retry_image_job -----------------------------------------------

def _failed_identification(conn, resources, store, key: str) -> str:
    """A real failure with an image id: the photo is accepted, then gone from the store when identification reads
    it (deleted between the two runs). Returns the image id."""
    assert dg.materialize([uploaded_images], resources=resources,
                          run_config={"ops": {"uploaded_images": {"config": {"object_keys": [key]}}}}).success
    data = store.get(key)
    store.delete(key)
    dg.materialize(ASSETS[1:], resources=resources, raise_on_error=False)
    store.put(key, data)
    failure = conn.execute("select * from ingest.failure where object_key = %s", (key,)).fetchone()
    assert failure["stage"] == "identification" and "ObjectNotFound" in failure["reason"]
    return str(failure["image_id"])


def test_a_failed_image_with_no_retry_left_for_a_day_fails_the_check(conn, catalog, resources, store, user):
    bob = user("bob")
    key = upload(store, bob, cover_photo(catalog[1], seed=3))
    image_id = _failed_identification(conn, resources, store, key)

    assert no_failed_image_forgotten(postgres=resources["postgres"]).passed  # its retry is still scheduled

    # What it looks like a day after its last automatic retry gave up.
    conn.execute("update ingest.failure set next_attempt_at = null, last_failed_at = now() - interval '25 hours' "
                 "where object_key = %s", (key,))
    conn.commit()
    result = no_failed_image_forgotten(postgres=resources["postgres"])

    assert not result.passed and result.metadata["forgotten"].value == 1
    table = result.metadata["images"].value
    assert f"| {image_id} | `{key}` |" in table and "ObjectNotFound" in table


def test_retry_image_job_re_runs_one_failed_image_by_its_id(conn, catalog, settings, instance, store, user):
    carol = user("carol")
    key = upload(store, carol, cover_photo(catalog[2], seed=4))
    other = upload(store, carol, cover_photo(catalog[3], seed=5))  # waiting in the bucket: not this job's
    defs = build_definitions(settings)
    image_id = _failed_identification(conn, defs.resources, store, key)
    conn.execute("update ingest.failure set next_attempt_at = null, last_failed_at = now() - interval '25 hours' "
                 "where object_key = %s", (key,))
    conn.commit()

    job = defs.resolve_job_def(RETRY_IMAGE_JOB)
    result = job.execute_in_process(
        run_config={"ops": {"uploaded_images": {"config": {"image_ids": [image_id.upper()]}}}}, instance=instance)

    assert result.success
    rows = images_by_key(conn, [key, other])
    assert list(rows) == [key]
    assert (str(rows[key]["image_id"]), rows[key]["decision"]) == (image_id, "new_copy")
    assert conn.execute("select resolved_at from ingest.failure where object_key = %s",
                        (key,)).fetchone()["resolved_at"] is not None
    assert no_failed_image_forgotten(postgres=defs.resources["postgres"]).passed
    metadata = result.asset_materializations_for_node("uploaded_images")[0].metadata
    assert (metadata["objects"].value, metadata["already_recorded"].value) == (1, 1)


def test_retry_image_job_refuses_an_image_that_did_not_fail(settings, instance):
    job = build_definitions(settings).resolve_job_def(RETRY_IMAGE_JOB)
    unknown = str(uuid.uuid4())

    result = job.execute_in_process(
        run_config={"ops": {"uploaded_images": {"config": {"image_ids": [unknown]}}}}, instance=instance,
        raise_on_error=False)

    assert not result.success
    [step_failure] = [e for e in result.all_events if e.is_step_failure]
    assert step_failure.step_key == "uploaded_images"
    assert f"no failed image named {unknown}" in step_failure.step_failure_data.error.message


# --- vectors_match_embedded_images -------------------------------------------------------------------------------

def test_the_vector_read_model_is_checked_against_the_embedded_images(conn, catalog, tmp_path, db_url, user):
    settings = Settings(home=tmp_path / "covr", database_url=db_url, clip_allow_random=True, clip_quantize=False)
    resources = build_resources(settings)
    store = resources["object_store"].store()
    dora = user("dora")
    run_ingest(resources, [upload(store, dora, cover_photo(catalog[0], seed=6, size=(1200, 900)))])
    assert conn.execute("select count(*) as n from media.cover_embedding").fetchone()["n"] == 1

    # The default read model is pgvector over the same rows.
    assert vectors_match_embedded_images(postgres=resources["postgres"], vectors=resources["vectors"]).passed

    # A Qdrant read model (qdrant-client's local mode) not yet synced misses the point, then has it.
    qdrant = QdrantVectorStore(QdrantClient(location=":memory:"))

    class LocalQdrant(VectorStoreResource):
        def get_store(self, postgres):
            return qdrant

    qdrant.ensure_collection() if hasattr(qdrant, "ensure_collection") else None
    stale = vectors_match_embedded_images(postgres=resources["postgres"], vectors=LocalQdrant())
    assert not stale.passed
    assert (stale.metadata["embedded_images"].value, stale.metadata["points"].value) == (1, 0)
    sync_vectors(dg.build_op_context(), resources["postgres"], LocalQdrant(), run_id=None)
    assert vectors_match_embedded_images(postgres=resources["postgres"], vectors=LocalQdrant()).passed


# --- run_failure_alert_sensor ------------------------------------------------------------------------------------

def _failed_run(settings, instance):
    """A real failed run: retry_image_job asked for an image that never failed."""
    job = build_definitions(settings).resolve_job_def(RETRY_IMAGE_JOB)
    result = job.execute_in_process(
        run_config={"ops": {"uploaded_images": {"config": {"image_ids": [str(uuid.uuid4())]}}}},
        instance=instance, raise_on_error=False)
    assert not result.success
    return instance.get_run_by_id(result.run_id), result.get_run_failure_event()


def _evaluate(sensor, settings, instance, run, event):
    with dg.build_run_status_sensor_context(
            sensor_name=sensor.name, dagster_event=event, dagster_instance=instance, dagster_run=run,
            resources={"postgres": build_resources(settings)["postgres"]}) as context:
        sensor(context.for_run_failure())


def _alerts(conn):
    return conn.execute("select * from notification.operator_alert order by alert_id").fetchall()


def test_a_failed_run_is_recorded_once_and_mailed_to_the_operator(conn, settings, instance, smtp_server):
    settings = settings.model_copy(update={"smtp_host": smtp_server.host, "smtp_port": smtp_server.port,
                                           "operator_email": "ops@example.org", "smtp_from": "covr@example.org",
                                           "dagster_ui_url": "http://127.0.0.1:3999"})
    sensor = build_run_failure_sensor(settings)
    run, event = _failed_run(settings, instance)

    _evaluate(sensor, settings, instance, run, event)
    _evaluate(sensor, settings, instance, run, event)  # the same failure seen again: nothing new

    [alert] = _alerts(conn)
    assert (alert["kind"], alert["run_id"], alert["job_name"]) == ("run_failed", run.run_id, RETRY_IMAGE_JOB)
    assert alert["message"].startswith('Execution of run for "retry_image_job" failed')
    assert "\nuploaded_images: no failed image named" in alert["message"]  # the step's own error, not only its name
    assert (alert["mailed_to"], alert["mail_error"]) == ("ops@example.org", None) and alert["mailed_at"]
    [mail] = smtp_server.messages
    assert mail["To"] == "ops@example.org" and mail["From"] == "covr@example.org"
    assert mail["Subject"] == f"Covr: run {run.run_id[:8]} of {RETRY_IMAGE_JOB} failed"
    body = mail.get_content()
    assert "no failed image named" in body and f"http://127.0.0.1:3999/runs/{run.run_id}" in body


def test_a_refused_mail_leaves_the_alert_recorded_with_the_error(conn, settings, instance, smtp_server):
    smtp_server.before_accept = lambda n: "554 5.7.1 relaying denied"
    settings = settings.model_copy(update={"smtp_host": smtp_server.host, "smtp_port": smtp_server.port,
                                           "operator_email": "ops@example.org"})
    run, event = _failed_run(settings, instance)

    _evaluate(build_run_failure_sensor(settings), settings, instance, run, event)

    [alert] = _alerts(conn)
    assert alert["mailed_at"] is None and "relaying denied" in alert["mail_error"]
    assert smtp_server.messages == []


def test_without_smtp_the_alert_is_only_recorded(conn, settings, instance):
    run, event = _failed_run(settings, instance)

    _evaluate(build_run_failure_sensor(settings), settings, instance, run, event)

    [alert] = _alerts(conn)
    assert alert["run_id"] == run.run_id and alert["mailed_to"] is None and alert["mailed_at"] is None
