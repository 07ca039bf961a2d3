"""Notice new upload objects and ask for ingest runs of at most N images each."""


import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import dagster as dg

from covr_core.dedup.failures import open_failures
from covr_pipelines.resources import ObjectStoreResource, PostgresResource

UPLOAD_PREFIX = "uploads/"
# Objects can appear in a listing later than newer ones (a slow upload keeps its start time as
# last-modified), so each tick re-lists this far behind the high-water mark.
OVERLAP = timedelta(minutes=15)
# How far the object store's clock and the Dagster host's may disagree: the runs read back start this much earlier.
CLOCK_SKEW = timedelta(minutes=5)
MAX_RUNS_PER_TICK = 50


@dataclass
class UploadCursor:
    """The sensor's durable state: only a last-modified high-water mark, so it stays small whatever the bucket holds.

    Which keys of the overlap window were already submitted is not kept here: the runs this job was asked for are
    in the Dagster instance's run storage (where the run-key dedup looks too), and each lists its object keys.
    """

    high_water: datetime | None = None

    @classmethod
    def parse(cls, raw: str | None) -> "UploadCursor":
        if not raw:
            return cls()
        hw = json.loads(raw).get("high_water")  # an older cursor's "recent" map is ignored: the runs say the same
        return cls(datetime.fromisoformat(hw) if hw else None)

    def serialize(self) -> str:
        return json.dumps({"high_water": self.high_water.isoformat() if self.high_water else None})

    @property
    def listing_since(self) -> datetime | None:
        return self.high_water - OVERLAP if self.high_water else None


def plan_batches(objects, cursor: UploadCursor, batch_size: int, max_runs: int, submitted=frozenset()):
    """Pure planning: which new objects go into which run, and the cursor after those runs.

    `submitted` holds the object keys of the runs already requested since the overlap window began. An object
    newer than the high-water mark is new whatever its key says (an overwrite gets a new last-modified); one at or
    under it is new only if no run was asked for its key (a late, slow upload). Objects are taken in
    (last_modified, key) order, so the high-water mark only moves past objects that were actually submitted.
    """
    hw = cursor.high_water
    fresh = sorted(
        (o for o in objects if hw is None or o.last_modified > hw or o.key not in submitted),
        key=lambda o: (o.last_modified, o.key),
    )[: batch_size * max_runs]
    batches = [fresh[i : i + batch_size] for i in range(0, len(fresh), batch_size)]
    for o in fresh:
        hw = max(hw, o.last_modified) if hw else o.last_modified
    return batches, UploadCursor(hw)


def submitted_keys(instance, job_name: str, since: datetime) -> set[str]:
    """The object keys of every run of `job_name` created since `since` (less the clock skew), whatever its status:
    queued, running, done or failed, each was asked for once. A failed image is the retry sensor's, not this one's."""
    runs = instance.get_runs(dg.RunsFilter(job_name=job_name, created_after=since - CLOCK_SKEW))
    return {key for run in runs
            for key in (((run.run_config or {}).get("ops") or {}).get("uploaded_images") or {})
            .get("config", {}).get("object_keys", [])}


def run_key_for(batch) -> str:
    """Each object's identity is key@etag; a batch's run key is the digest of its members."""
    return _members_key(f"{o.key}@{o.etag}" for o in batch)


def _members_key(members) -> str:
    """A short, stable run key for a set of members: the member itself, or the first, a count and a digest."""
    members = sorted(members)
    if len(members) == 1:
        return members[0]
    return f"{members[0]}+{len(members) - 1}:{hashlib.sha256(chr(10).join(members).encode()).hexdigest()[:16]}"


def ingest_run_request(object_keys: list[str], run_key: str | None = None) -> dg.RunRequest:
    return dg.RunRequest(
        run_key=run_key,
        run_config={"ops": {"uploaded_images": {"config": {"object_keys": object_keys}}}},
        tags={"covr/objects": str(len(object_keys))},
    )


def build_upload_sensor(job, *, batch_size: int = 64, max_runs: int = MAX_RUNS_PER_TICK,
                        minimum_interval_seconds: int = 30):
    @dg.sensor(
        name="new_uploads_sensor",
        job=job,
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=f"Lists uploads/ since the high-water mark and requests ingest runs of up to {batch_size} images.",
    )
    def new_uploads_sensor(context: dg.SensorEvaluationContext, object_store: ObjectStoreResource):
        cursor = UploadCursor.parse(context.cursor)
        store = object_store.store()
        listed = list(store.list_since(UPLOAD_PREFIX, cursor.listing_since))
        # A first tick (no high-water mark) takes every listed object and needs no run history.
        submitted = submitted_keys(context.instance, job.name, cursor.listing_since) if cursor.high_water else set()
        batches, next_cursor = plan_batches(listed, cursor, batch_size, max_runs, submitted)
        context.update_cursor(next_cursor.serialize())
        if not batches:
            return dg.SkipReason(f"no new uploads in {store.describe()} ({len(listed)} listed since the overlap)")
        context.log.info(
            f"{sum(map(len, batches))} new uploads in {len(batches)} runs; high-water mark {next_cursor.high_water}"
        )
        return [ingest_run_request([o.key for o in b], run_key_for(b)) for b in batches]

    return new_uploads_sensor


def unrecorded_uploads(objects, recorded_keys: set[str], now: datetime):
    """Pure: listed uploads older than the overlap that have neither an image row nor a recorded failure.

    Younger objects are still the high-water sensor's; older ones it can no longer see.
    """
    return sorted(
        (o for o in objects if o.key not in recorded_keys and o.last_modified < now - OVERLAP),
        key=lambda o: (o.last_modified, o.key),
    )


def build_reconcile_sensor(job, *, batch_size: int = 64, minimum_interval_seconds: int = 600):
    @dg.sensor(
        name="upload_reconcile_sensor",
        job=job,
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Compares the whole uploads/ listing with media.image and ingests what the high-water mark missed.",
    )
    def upload_reconcile_sensor(
        context: dg.SensorEvaluationContext, object_store: ObjectStoreResource, postgres: PostgresResource
    ):
        store = object_store.store()
        listed = list(store.list_since(UPLOAD_PREFIX, None))
        with postgres.connection() as conn:
            recorded = {r["object_key"] for r in conn.execute(
                "select object_key from media.image union select object_key from ingest.failure").fetchall()}
        now = datetime.now(UTC)
        missed = unrecorded_uploads(listed, recorded, now)
        if not missed:
            return dg.SkipReason(f"all {len(listed)} uploads in {store.describe()} are recorded")
        context.log.warning(f"{len(missed)} uploads missed by the high-water sensor, e.g. {missed[0].key}")
        # The hour in the run key lets a batch whose run failed be submitted again an hour later, never sooner.
        hour = now.strftime("%Y%m%d%H")
        batches = [missed[i : i + batch_size] for i in range(0, len(missed), batch_size)][:MAX_RUNS_PER_TICK]
        return [ingest_run_request([o.key for o in b], f"reconcile:{hour}:{run_key_for(b)}") for b in batches]

    return upload_reconcile_sensor


def build_retry_sensor(job, *, batch_size: int = 64, minimum_interval_seconds: int = 60):
    @dg.sensor(
        name="failed_images_retry_sensor",
        job=job,
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Retries images whose ingest failed (store, Open Library, a stage's error) once their backoff is due.",
    )
    def failed_images_retry_sensor(context: dg.SensorEvaluationContext, postgres: PostgresResource):
        with postgres.connection() as conn:
            due = open_failures(conn, due_only=True, limit=batch_size * MAX_RUNS_PER_TICK)
        if not due:
            return dg.SkipReason("no failed image is due for a retry")
        requests = []
        for i in range(0, len(due), batch_size):
            batch = due[i : i + batch_size]
            # Attempt numbers in the run key: the same attempt is never submitted twice.
            run_key = "retry:" + _members_key(f"{f['object_key']}#{f['attempts']}" for f in batch)
            requests.append(ingest_run_request([f["object_key"] for f in batch], run_key))
        context.log.info(f"retrying {len(due)} failed images in {len(requests)} runs")
        return requests

    return failed_images_retry_sensor
