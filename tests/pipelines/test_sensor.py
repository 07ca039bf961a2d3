"""The upload sensor: batches of at most N, a durable cursor, and no object missed or submitted twice."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta

import dagster as dg

from covr_core.media.storage import LocalObjectStore, StoredObject
from covr_pipelines.definitions import ingest_job
from covr_pipelines.defs.ingestion.sensors import OVERLAP, UploadCursor, build_upload_sensor, plan_batches
from covr_pipelines.resources import LocalObjectStoreResource

USER = "0b9a02de-3f99-424b-80f8-0278349cff50"


def _tick(sensor, resource, cursor):
    with dg.build_sensor_context(cursor=cursor, resources={"object_store": resource}) as context:
        result = sensor(context)
        return (result if isinstance(result, list) else [result]), context.cursor


def _put(store: LocalObjectStore, name: str, when: datetime | None = None) -> str:
    key = f"uploads/{USER}/{name}.jpg"
    store.put(key, name.encode())
    if when is not None:
        path = store.root / key
        os.utime(path, (when.timestamp(), when.timestamp()))
    return key


def test_new_uploads_are_grouped_into_runs_of_at_most_n(tmp_path):
    resource = LocalObjectStoreResource(root=str(tmp_path))
    store = resource.store()
    keys = [_put(store, f"{i:02d}") for i in range(5)]
    sensor = build_upload_sensor(ingest_job, batch_size=2)

    requests, cursor = _tick(sensor, resource, None)

    assert [len(r.run_config["ops"]["uploaded_images"]["config"]["object_keys"]) for r in requests] == [2, 2, 1]
    submitted = [k for r in requests for k in r.run_config["ops"]["uploaded_images"]["config"]["object_keys"]]
    assert sorted(submitted) == sorted(keys)
    assert len({r.run_key for r in requests}) == 3
    single = requests[-1]
    assert single.run_key == f"{single.run_config['ops']['uploaded_images']['config']['object_keys'][0]}@" \
                             f"{store.head(single.run_config['ops']['uploaded_images']['config']['object_keys'][0]).etag}"


def test_a_restarted_sensor_resumes_from_its_cursor_without_repeats(tmp_path):
    resource = LocalObjectStoreResource(root=str(tmp_path))
    store = resource.store()
    first = [_put(store, f"a{i}") for i in range(3)]
    sensor = build_upload_sensor(ingest_job, batch_size=64)
    requests, cursor = _tick(sensor, resource, None)
    assert sum(len(r.run_config["ops"]["uploaded_images"]["config"]["object_keys"]) for r in requests) == 3

    # A new sensor object with only the stored cursor, as after a daemon restart.
    restarted = build_upload_sensor(ingest_job, batch_size=64)
    again, cursor = _tick(restarted, resource, cursor)
    assert isinstance(again[0], dg.SkipReason)

    late = _put(store, "late")
    more, _ = _tick(restarted, resource, cursor)
    assert [r.run_config["ops"]["uploaded_images"]["config"]["object_keys"] for r in more] == [[late]]
    assert late not in first


def test_an_object_that_appears_late_with_an_older_timestamp_is_not_missed(tmp_path):
    resource = LocalObjectStoreResource(root=str(tmp_path))
    store = resource.store()
    _put(store, "new")
    sensor = build_upload_sensor(ingest_job, batch_size=64)
    _, cursor = _tick(sensor, resource, None)

    # A slow upload finishes now but carries the time it started, before the high-water mark.
    high_water = UploadCursor.parse(cursor).high_water
    slow = _put(store, "slow", when=high_water - OVERLAP / 2)
    requests, _ = _tick(sensor, resource, cursor)

    assert [r.run_config["ops"]["uploaded_images"]["config"]["object_keys"] for r in requests] == [[slow]]


def test_planning_moves_the_high_water_mark_only_over_submitted_objects():
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    objects = [StoredObject(f"uploads/u/{i}.jpg", f"e{i}", 1, t0 + timedelta(seconds=i)) for i in range(10)]

    batches, cursor = plan_batches(objects, UploadCursor(), batch_size=3, max_runs=2)

    assert [len(b) for b in batches] == [3, 3]
    assert cursor.high_water == t0 + timedelta(seconds=5)
    rest, _ = plan_batches(objects, cursor, batch_size=3, max_runs=2)
    assert [o.key for b in rest for o in b] == [f"uploads/u/{i}.jpg" for i in range(6, 10)]
