"""Bench the upload sensor's tick as the bucket grows: listing, run history, planning; run by hand.

    .venv/bin/python bench/sensor.py                     # 10k and 100k objects
    .venv/bin/python bench/sensor.py --objects 20000

A local object store (the embedded default) holds `--objects` uploads: 64 a minute over the last 16 minutes, the rest
spread over 30 days before; a Dagster instance holds the runs the overlap window (15 minutes) would have, one of
64 keys a minute, and the last minute's 64 uploads are the tick's new work. A steady-state tick, its cursor just behind the newest uploads, is then timed whole
(`new_uploads_sensor` through `build_sensor_context`), against its parts measured in the same run:
- baseline: the listing the tick makes (`list_since` from the overlap), which on a local store walks every file;
- the run history it reads back (`submitted_keys`: the runs created in the overlap window).
It prints the cursor's size too (it must not grow with the bucket). An S3 listing pages 1,000 keys a request,
so there the listing's share grows faster still: that is when the README's S3 event notifications take over.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from covr_core.media.storage import LocalObjectStore  # noqa: E402
from covr_pipelines.definitions import ingest_job  # noqa: E402
from covr_pipelines.defs.ingestion.sensors import (  # noqa: E402
    OVERLAP,
    UPLOAD_PREFIX,
    UploadCursor,
    build_upload_sensor,
    submitted_keys,
)
from covr_pipelines.resources import LocalObjectStoreResource  # noqa: E402

USER = "0b9a02de-3f99-424b-80f8-0278349cff50"


WINDOW_MINUTES = int(OVERLAP.total_seconds() // 60) + 1
PER_MINUTE = 64


def fill(root: Path, objects: int, now: datetime) -> list[str]:
    """`objects` small uploads, oldest first: 64 a minute over the last 16 minutes, the rest over 30 days before."""
    store = LocalObjectStore(root)
    recent = min(objects, WINDOW_MINUTES * PER_MINUTE)
    keys = []
    for i in range(objects):
        key = f"{UPLOAD_PREFIX}{USER}/{i:08d}.jpg"
        store.put(key, b"x")
        back = objects - 1 - i  # 0 for the newest
        if back < recent:
            when = now - timedelta(minutes=back // PER_MINUTE, seconds=1 + back % PER_MINUTE * 0.5)
        else:
            when = now - timedelta(minutes=WINDOW_MINUTES + 1) - timedelta(days=30) * (back - recent) / objects
        os.utime(root / key, (when.timestamp(), when.timestamp()))
        keys.append(key)
    return keys


def add_history(instance, keys: list[str]) -> int:
    """One run of the minute's 64 keys for every minute of the window but the last (the tick's new work)."""
    runs = 0
    for minute in range(1, WINDOW_MINUTES):
        batch = keys[len(keys) - PER_MINUTE * (minute + 1):len(keys) - PER_MINUTE * minute]
        instance.add_run(dg.DagsterRun(
            job_name=ingest_job.name, run_id=str(uuid.uuid4()),
            run_config={"ops": {"uploaded_images": {"config": {"object_keys": batch}}}},
            status=dg.DagsterRunStatus.SUCCESS))
        runs += 1
    return runs


def timed(fn, repeat: int = 5) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeat):
        started = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times), out


def bench(objects: int) -> None:
    now = datetime.now(UTC)
    with tempfile.TemporaryDirectory(prefix="covr-bench-sensor-") as tmp:
        root = Path(tmp) / "objects"
        started = time.perf_counter()
        keys = fill(root, objects, now)
        fill_s = time.perf_counter() - started
        (Path(tmp) / "dagster").mkdir()
        with dg.instance_for_test(temp_dir=str(Path(tmp) / "dagster")) as instance:
            runs = add_history(instance, keys)
            store = LocalObjectStore(root)
            # The tick's cursor: the high-water mark at the last upload the history's runs took.
            cursor = UploadCursor(now - timedelta(minutes=1))
            since = cursor.listing_since
            list_s, listed = timed(lambda: list(store.list_since(UPLOAD_PREFIX, since)))
            history_s, submitted = timed(lambda: submitted_keys(instance, ingest_job.name, since))
            sensor = build_upload_sensor(ingest_job)
            resource = LocalObjectStoreResource(root=str(root))

            def tick():
                with dg.build_sensor_context(instance=instance, cursor=cursor.serialize(),
                                             resources={"object_store": resource}) as context:
                    return sensor.evaluate_tick(context)

            tick_s, data = timed(tick)
    new = sum(len(r.run_config["ops"]["uploaded_images"]["config"]["object_keys"]) for r in data.run_requests or [])
    print(f"{objects:>8,} objects ({fill_s:.0f} s to write), {runs} runs of history in the overlap window")
    print(f"  tick      {tick_s * 1000:8.1f} ms: {new} new uploads in {len(data.run_requests or [])} run(s); "
          f"cursor {len(data.cursor)} bytes")
    print(f"  listing   {list_s * 1000:8.1f} ms ({len(listed)} listed since the overlap; a local store walks every "
          f"file) = {list_s / tick_s:.0%} of the tick")
    print(f"  history   {history_s * 1000:8.1f} ms ({len(submitted)} keys of the window's runs) = "
          f"{history_s / tick_s:.0%} of the tick")


def main() -> None:
    logging.getLogger("dagster").setLevel(logging.WARNING)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--objects", type=int, nargs="+", default=[10_000, 100_000])
    args = parser.parse_args()
    for n in args.objects:
        bench(n)


if __name__ == "__main__":
    main()
