"""Bad input and concurrency in real Dagster runs: one bad object never sinks a batch, and no upload is left behind."""

from __future__ import annotations

import os
import threading
import uuid
from datetime import UTC, datetime, timedelta

import dagster as dg
import pytest

from covr_core.dedup.failures import record_failure
from covr_pipelines.definitions import ingest_job
from covr_pipelines.defs.ingestion.sensors import OVERLAP, build_reconcile_sensor, build_retry_sensor
from PIL import Image

from covr_pipelines.sample_photos import jpeg_bytes
from tests.photos import cover_photo
from tests.pipelines.ingest_runs import ASSETS_WITH_CHECKS, images_by_key, run_ingest, upload


def test_a_one_pixel_jpeg_and_a_stray_key_do_not_sink_the_valid_photo(conn, catalog, resources, store, user):
    alice = user("alice")
    good = upload(store, alice, cover_photo(catalog[0], seed=1))
    tiny = upload(store, alice, jpeg_bytes(Image.new("RGB", (1, 1), (200, 10, 10))))
    stray = "uploads/alice/x.jpg"
    store.put(stray, b"not under a user id")

    result = run_ingest(resources, [good, tiny, stray])
    rows = images_by_key(conn, [good, tiny, stray])

    assert rows[good]["status"] == "accepted" and rows[good]["decision"] == "new_copy"
    assert rows[tiny]["status"] == "rejected"
    assert "1x1 pixels" in rows[tiny]["rejection_reason"]
    assert stray not in rows
    metadata = result.asset_materializations_for_node("uploaded_images")[0].metadata
    assert metadata["not_an_upload"].value == 1 and metadata["accepted"].value == 1
    assert all(c.passed for c in result.get_asset_check_evaluations())


def test_an_object_deleted_after_listing_is_failed_for_retry_and_the_rest_proceeds(conn, catalog, resources,
                                                                                   store, user):
    bob = user("bob")
    good = upload(store, bob, cover_photo(catalog[1], seed=2))
    gone = f"uploads/{bob}/{uuid.uuid4()}.jpg"  # listed by the sensor, deleted before the run read it

    run_ingest(resources, [good, gone])

    assert images_by_key(conn, [good])[good]["status"] == "accepted"
    failure = conn.execute("select * from ingest.failure where object_key = %s", (gone,)).fetchone()
    assert failure["stage"] == "upload" and "ObjectNotFound" in failure["reason"]
    assert failure["attempts"] == 1 and failure["next_attempt_at"] is not None

    # Put back, then retried: processed once, and the failure is resolved.
    store.put(gone, cover_photo(catalog[2], seed=3))
    run_ingest(resources, [gone])
    row = images_by_key(conn, [gone])[gone]
    assert row["status"] == "accepted" and row["decision"] == "new_copy"
    assert conn.execute("select resolved_at from ingest.failure where object_key = %s",
                        (gone,)).fetchone()["resolved_at"] is not None


def test_an_overwritten_key_is_refused_and_the_first_version_kept(conn, catalog, resources, store, user):
    carol = user("carol")
    key = upload(store, carol, cover_photo(catalog[0], seed=4))
    run_ingest(resources, [key])
    first = images_by_key(conn, [key])[key]

    store.put(key, cover_photo(catalog[3], seed=5))
    result = run_ingest(resources, [key])

    after = images_by_key(conn, [key])[key]
    assert after["image_id"] == first["image_id"] and after["sha256"] == first["sha256"]
    refusal = conn.execute("select reason from ingest.overwrite_refusal where object_key = %s", (key,)).fetchone()
    assert "was overwritten" in refusal["reason"]
    assert result.asset_materializations_for_node("uploaded_images")[0].metadata["overwrite_refused"].value == 1


def test_two_runs_over_the_same_members_in_opposite_order_make_one_copy_each(conn, catalog, resources, store,
                                                                            user):
    x, y = user("xavier"), user("yvonne")
    book = catalog[4]
    x_keys = [upload(store, x, cover_photo(book, seed=s)) for s in (10, 11)]
    y_keys = [upload(store, y, cover_photo(book, seed=s)) for s in (12, 13)]
    batches = [[x_keys[0], y_keys[0]], [y_keys[1], x_keys[1]]]
    outcomes = []

    def ingest(keys):
        outcomes.append(run_ingest(resources, keys).success)

    threads = [threading.Thread(target=ingest, args=(b,)) for b in batches]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)

    assert outcomes == [True, True]
    copies = conn.execute(
        """
        select c.current_holder_id, count(*) as n from catalog.copy c join catalog.book b using (book_id)
        where b.isbn13 = %s group by c.current_holder_id
        """,
        (book["isbn13"],),
    ).fetchall()
    assert sorted(r["n"] for r in copies) == [1, 1]
    decisions = [r["decision"] for r in images_by_key(conn, x_keys + y_keys).values()]
    assert sorted(decisions) == ["existing_copy", "existing_copy", "new_copy", "new_copy"]


def _sensor_tick(sensor, resources):
    with dg.build_sensor_context(resources=resources) as context:
        result = sensor(context)
    return result if isinstance(result, list) else [result]


def test_the_reconcile_pass_ingests_a_late_object_older_than_the_overlap(conn, catalog, resources, store, user):
    dora = user("dora")
    late = upload(store, dora, cover_photo(catalog[0], seed=6))
    long_ago = (datetime.now(UTC) - OVERLAP - timedelta(hours=2)).timestamp()
    os.utime(store.root / late, (long_ago, long_ago))
    sensor = build_reconcile_sensor(ingest_job, batch_size=8)

    [request] = _sensor_tick(sensor, resources)
    assert isinstance(request, dg.RunRequest)
    keys = request.run_config["ops"]["uploaded_images"]["config"]["object_keys"]
    assert keys == [late]

    run_ingest(resources, keys)
    assert images_by_key(conn, [late])[late]["decision"] == "new_copy"
    [skip] = _sensor_tick(sensor, resources)
    assert isinstance(skip, dg.SkipReason)


def test_the_retry_sensor_submits_only_failures_whose_backoff_is_due(conn, resources, user):
    erin = user("erin")
    due, later = (f"uploads/{erin}/{uuid.uuid4()}.jpg" for _ in range(2))
    for key in (due, later):
        record_failure(conn, object_key=key, stage="upload", reason="upload failed: OSError: store down",
                       run_id="r1", uploader_id=erin)
    conn.execute("update ingest.failure set next_attempt_at = now() - interval '1 second' where object_key = %s",
                 (due,))
    conn.commit()
    sensor = build_retry_sensor(ingest_job, batch_size=8)

    [request] = _sensor_tick(sensor, resources)

    assert request.run_config["ops"]["uploaded_images"]["config"]["object_keys"] == [due]


def test_the_database_going_away_fails_the_run_and_a_retry_processes_each_image_once(conn, catalog, resources,
                                                                                    store, user, db_url, admin_url):
    from urllib.parse import urlsplit

    import psycopg

    from covr_pipelines.defs.ingestion.assets import uploaded_images
    from covr_pipelines.defs.ingestion.sensors import ingest_run_request

    fay = user("fay")
    keys = [upload(store, fay, cover_photo(book, seed=20 + i)) for i, book in enumerate(catalog[:3])]
    run_config = ingest_run_request(keys).run_config
    assert dg.materialize([uploaded_images], resources=resources, run_config=run_config).success
    conn.commit()
    name = urlsplit(db_url).path.lstrip("/")

    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f"alter database {name} allow_connections false")
        admin.execute("select pg_terminate_backend(pid) from pg_stat_activity where datname = %s", (name,))
    try:
        gone = dg.materialize(ASSETS_WITH_CHECKS, resources=resources, run_config=run_config, raise_on_error=False)
        assert not gone.success
    finally:
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(f"alter database {name} allow_connections true")

    run_ingest(resources, keys)
    with psycopg.connect(db_url) as fresh:
        counts = fresh.execute(
            """
            select (select count(*) from media.image where object_key = any(%(k)s)) as images,
                   (select count(*) from ingest.dedup_result r join media.image i using (image_id)
                    where i.object_key = any(%(k)s)) as decisions,
                   (select count(*) from outbox.event where type = 'DedupResolved') as resolved_events,
                   (select count(*) from outbox.event where type = 'ImageUploaded') as uploaded_events,
                   (select count(*) from catalog.copy where current_holder_id = %(fay)s) as copies
            """,
            {"k": keys, "fay": fay},
        ).fetchone()
    assert counts == (3, 3, 3, 3, 3)



# Where the server stops: before the third image's row is written (two committed), or inside the second
# image's dedup transaction, after its copy was written and before it commits (one committed, one rolled back).
STOP_POINTS = {
    "upload": ("covr_pipelines.defs.ingestion.assets", "record_image", 3, "uploaded_images", "accepted"),
    "dedup": ("covr_pipelines.defs.dedup.assets", "resolve_failure", 2, "dedup_decisions", "decided"),
}


@pytest.mark.parametrize("stage", list(STOP_POINTS))
def test_stopping_the_embedded_server_mid_batch_then_retrying_processes_each_image_once(tmp_path, monkeypatch,
                                                                                       stage):
    """`covr db stop` lands while a run works through its batch: the run fails, and the next run finishes it.

    The server is an embedded one of this test's own (its own COVR_HOME), really stopped and started again,
    not the session's.
    """
    import importlib
    import json

    import psycopg

    from covr_core.catalog.books import import_books, read_catalog_file
    from covr_core.contact.accounts import ensure_user
    from covr_core.platform.db import Database, embedded_server_pid, stop_embedded
    from covr_core.platform.migrations import migrate
    from covr_core.platform.settings import Settings
    from covr_pipelines.defs.ingestion.sensors import ingest_run_request
    from covr_pipelines.resources import build_resources
    from covr_pipelines.sample_photos import SAMPLE_BOOKS

    module_name, function, stop_at_call, failing_step, done_metadata = STOP_POINTS[stage]
    settings = Settings(home=tmp_path / "covr", database_url=None)
    books = [{"isbn13": isbn, "title": title, "authors": [author]} for title, author, isbn in SAMPLE_BOOKS[:4]]
    catalog_file = tmp_path / "catalog.jsonl"
    catalog_file.write_text("".join(json.dumps(b) + "\n" for b in books))
    with Database.from_settings(settings) as db, db.connection() as conn:
        migrate(conn)
        import_books(conn, list(read_catalog_file(catalog_file)))
        gus = ensure_user(conn, "gus")
    resources = build_resources(settings)
    keys = [upload(resources["object_store"].store(), gus, cover_photo(book, seed=30 + i))
            for i, book in enumerate(books)]

    module = importlib.import_module(module_name)
    real, calls = getattr(module, function), []

    def stop_the_server_first(*args, **kwargs):
        calls.append(args)
        if len(calls) == stop_at_call:
            assert stop_embedded(settings.pg_data_dir) is not None, "the embedded server was not running"
        return real(*args, **kwargs)

    monkeypatch.setattr(module, function, stop_the_server_first)
    gone = dg.materialize(ASSETS_WITH_CHECKS, resources=resources, run_config=ingest_run_request(keys).run_config,
                          raise_on_error=False)
    monkeypatch.undo()

    assert not gone.success and len(calls) == stop_at_call
    [failure] = [e for e in gone.all_events if e.is_step_failure]
    assert failure.step_key == failing_step
    cause = failure.event_specific_data.error.cause  # psycopg's AdminShutdown: the server is going down
    assert issubclass(getattr(psycopg.errors, cause.cls_name), psycopg.OperationalError), cause.to_string()
    assert embedded_server_pid(settings.pg_data_dir) is None, "the run left the stopped server running"

    # The next run (the retry sensor's, or a re-execution) starts the server again, as any covr process does,
    # and does exactly what the first left undone: the images after the stop point.
    retry = run_ingest(build_resources(settings), keys)
    done = retry.asset_materializations_for_node(failing_step)[0].metadata
    assert done[done_metadata].value == 4 - (stop_at_call - 1)

    with Database.from_settings(settings) as db, db.connection() as conn:
        per_image = conn.execute(
            """
            select i.object_key, i.status,
                   (select count(*) from media.image m where m.object_key = i.object_key) as images,
                   (select count(*) from ingest.identification d where d.image_id = i.image_id) as identifications,
                   (select count(*) from ingest.dedup_result r where r.image_id = i.image_id) as decisions,
                   (select count(*) from catalog.copy c join ingest.dedup_result r using (copy_id)
                    where r.image_id = i.image_id) as copies,
                   (select count(*) from outbox.event e where e.type = 'ImageUploaded'
                    and e.payload->>'image_id' = i.image_id::text) as uploaded_events,
                   (select count(*) from outbox.event e where e.type = 'BookIdentified'
                    and e.payload->>'image_id' = i.image_id::text) as identified_events,
                   (select count(*) from outbox.event e where e.type = 'DedupResolved'
                    and e.payload->>'image_id' = i.image_id::text) as resolved_events
            from media.image i
            """
        ).fetchall()
        totals = conn.execute(
            """
            select (select count(*) from catalog.copy where current_holder_id = %s) as copies,
                   (select count(*) from outbox.event) as events,
                   (select count(*) from ingest.failure where resolved_at is null) as open_failures
            """,
            (gus,),
        ).fetchone()
    once = {"status": "accepted", "images": 1, "identifications": 1, "decisions": 1, "copies": 1,
            "uploaded_events": 1, "identified_events": 1, "resolved_events": 1}
    assert sorted(r["object_key"] for r in per_image) == sorted(keys)
    assert [{k: v for k, v in r.items() if k != "object_key"} for r in per_image] == [once] * 4, per_image
    assert totals == {"copies": 4, "events": 12, "open_failures": 0}
    assert embedded_server_pid(settings.pg_data_dir) is None, "no Postgres is left behind"
