"""The upload sensor: batches of at most N, a small durable cursor, and no object missed or submitted twice."""

from __future__ import annotations

import os
import uuid
from datetime import UTC, datetime, timedelta

import dagster as dg
import pytest

from covr_core.media.storage import LocalObjectStore, StoredObject
from covr_pipelines.cli import RUN_KEY_TAG, SENSOR_NAME_TAG
from covr_pipelines.definitions import ingest_job
from covr_pipelines.defs.ingestion.sensors import OVERLAP, UploadCursor, build_upload_sensor, plan_batches
from covr_pipelines.resources import LocalObjectStoreResource

USER = "0b9a02de-3f99-424b-80f8-0278349cff50"


def _keys(request: dg.RunRequest) -> list[str]:
    return request.run_config["ops"]["uploaded_images"]["config"]["object_keys"]


class Daemon:
    """The sensor daemon's part, in the test's own instance: evaluate a tick with the stored cursor, drop a request
    whose run key this sensor already used, and create a run (not started) for each other one."""

    def __init__(self, instance, resource, sensor):
        self.instance, self.resource, self.sensor = instance, resource, sensor
        self.cursor: str | None = None
        self.cursors: list[str] = []

    def tick(self) -> tuple[list[dg.RunRequest], str | None]:
        with dg.build_sensor_context(instance=self.instance, cursor=self.cursor,
                                     resources={"object_store": self.resource}) as context:
            data = self.sensor.evaluate_tick(context)
        self.cursor = data.cursor
        self.cursors.append(data.cursor)
        queued = []
        for request in data.run_requests or []:
            tags = {**request.tags, SENSOR_NAME_TAG: self.sensor.name, RUN_KEY_TAG: request.run_key}
            if self.instance.get_runs(dg.RunsFilter(tags={SENSOR_NAME_TAG: self.sensor.name,
                                                          RUN_KEY_TAG: request.run_key}), limit=1):
                continue
            self.instance.add_run(dg.DagsterRun(job_name=ingest_job.name, run_id=str(uuid.uuid4()),
                                                run_config=request.run_config, tags=tags,
                                                status=dg.DagsterRunStatus.NOT_STARTED))
            queued.append(request)
        return queued, data.skip_message


@pytest.fixture
def instance(tmp_path):
    (tmp_path / "dagster").mkdir()
    with dg.instance_for_test(temp_dir=str(tmp_path / "dagster")) as instance:
        yield instance


def _put(store: LocalObjectStore, name: str, when: datetime | None = None) -> str:
    key = f"uploads/{USER}/{name}.jpg"
    store.put(key, name.encode())
    if when is not None:
        os.utime(store.root / key, (when.timestamp(), when.timestamp()))
    return key


def test_new_uploads_are_grouped_into_runs_of_at_most_n(tmp_path, instance):
    resource = LocalObjectStoreResource(root=str(tmp_path / "objects"))
    store = resource.store()
    keys = [_put(store, f"{i:02d}") for i in range(5)]
    daemon = Daemon(instance, resource, build_upload_sensor(ingest_job, batch_size=2))

    requests, _ = daemon.tick()

    assert [len(_keys(r)) for r in requests] == [2, 2, 1]
    assert sorted(k for r in requests for k in _keys(r)) == sorted(keys)
    assert len({r.run_key for r in requests}) == 3
    [single] = _keys(requests[-1])
    assert requests[-1].run_key == f"{single}@{store.head(single).etag}"


def test_a_restarted_sensor_resumes_from_its_cursor_without_repeats(tmp_path, instance):
    resource = LocalObjectStoreResource(root=str(tmp_path / "objects"))
    store = resource.store()
    first = [_put(store, f"a{i}") for i in range(3)]
    daemon = Daemon(instance, resource, build_upload_sensor(ingest_job, batch_size=64))
    requests, _ = daemon.tick()
    assert sum(len(_keys(r)) for r in requests) == 3

    # A new sensor object with only the stored cursor and the instance, as after a daemon restart.
    daemon.sensor = build_upload_sensor(ingest_job, batch_size=64)
    again, skipped = daemon.tick()
    assert again == [] and "no new uploads" in skipped

    late = _put(store, "late")
    more, _ = daemon.tick()
    assert [_keys(r) for r in more] == [[late]]
    assert late not in first


def test_an_object_that_appears_late_with_an_older_timestamp_is_not_missed(tmp_path, instance):
    resource = LocalObjectStoreResource(root=str(tmp_path / "objects"))
    store = resource.store()
    _put(store, "new")
    daemon = Daemon(instance, resource, build_upload_sensor(ingest_job, batch_size=64))
    daemon.tick()

    # A slow upload finishes now but carries the time it started, before the high-water mark.
    high_water = UploadCursor.parse(daemon.cursor).high_water
    slow = _put(store, "slow", when=high_water - OVERLAP / 2)
    requests, _ = daemon.tick()

    assert [_keys(r) for r in requests] == [[slow]]


def test_an_overwrite_is_submitted_again_so_its_refusal_is_recorded(tmp_path, instance):
    resource = LocalObjectStoreResource(root=str(tmp_path / "objects"))
    store = resource.store()
    key = _put(store, "cover", when=datetime.now(UTC) - timedelta(minutes=1))
    daemon = Daemon(instance, resource, build_upload_sensor(ingest_job, batch_size=64))
    daemon.tick()

    store.put(key, b"other bytes")  # a new etag and a new last-modified, past the high-water mark
    requests, _ = daemon.tick()

    assert [_keys(r) for r in requests] == [[key]]
    assert requests[0].run_key == f"{key}@{store.head(key).etag}"


def test_thousands_of_uploads_keep_the_cursor_small_and_each_is_submitted_once(tmp_path, instance):
    """Bursts of uploads, slow uploads landing under the high-water mark and uploads sharing its exact timestamp,
    over ticks capped at 10 runs of 50: every key is asked for exactly once, and the cursor never grows."""
    resource = LocalObjectStoreResource(root=str(tmp_path / "objects"))
    store = resource.store()
    daemon = Daemon(instance, resource, build_upload_sensor(ingest_job, batch_size=50, max_runs=10))
    start = datetime.now(UTC) - timedelta(minutes=50)
    put: list[str] = []
    asked: list[str] = []

    def drain() -> None:
        for _ in range(20):
            queued, skipped = daemon.tick()
            asked.extend(k for r in queued for k in _keys(r))
            if skipped:
                return
        raise AssertionError("the sensor never caught up")

    for burst in range(4):
        base = start + timedelta(minutes=10 * burst)
        # 900 uploads over 7.5 minutes, two a second: the whole burst sits inside the 15-minute overlap.
        put += [_put(store, f"b{burst}-{i:04d}", base + timedelta(seconds=i / 2)) for i in range(900)]
        if burst:
            high_water = UploadCursor.parse(daemon.cursor).high_water
            put += [_put(store, f"slow{burst}-{i}", high_water - timedelta(minutes=3 + i)) for i in range(5)]
            put += [_put(store, f"tie{burst}-{i}", high_water) for i in range(3)]
        drain()

    runs = instance.get_runs(dg.RunsFilter(job_name=ingest_job.name))
    per_run = [run.run_config["ops"]["uploaded_images"]["config"]["object_keys"] for run in runs]
    emitted = [k for keys in per_run for k in keys]
    assert len(put) == 3624
    assert sorted(asked) == sorted(put)  # nothing missed
    assert len(emitted) == len(set(emitted)) == len(put)  # and no key in two runs
    assert all(len(c) < 100 for c in daemon.cursors), max(daemon.cursors, key=len)
    assert max(map(len, per_run)) == 50


def test_planning_moves_the_high_water_mark_only_over_submitted_objects():
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    objects = [StoredObject(f"uploads/u/{i}.jpg", f"e{i}", 1, t0 + timedelta(seconds=i)) for i in range(10)]

    batches, cursor = plan_batches(objects, UploadCursor(), batch_size=3, max_runs=2)

    assert [len(b) for b in batches] == [3, 3]
    assert cursor.high_water == t0 + timedelta(seconds=5)
    submitted = {o.key for b in batches for o in b}
    rest, _ = plan_batches(objects, cursor, batch_size=3, max_runs=2, submitted=submitted)
    assert [o.key for b in rest for o in b] == [f"uploads/u/{i}.jpg" for i in range(6, 10)]


def test_an_older_cursor_with_its_recent_map_still_parses_to_its_high_water_mark():
    old = '{"high_water": "2026-01-01T00:00:00+00:00", "recent": {"uploads/u/1.jpg@e1": "2026-01-01T00:00:00+00:00"}}'

    cursor = UploadCursor.parse(old)

    assert cursor.high_water == datetime(2026, 1, 1, tzinfo=UTC)
    assert cursor.serialize() == '{"high_water": "2026-01-01T00:00:00+00:00"}'
