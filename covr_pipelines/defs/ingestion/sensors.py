"""Notice new upload objects and ask for ingest runs of at most N images each."""


import hashlib
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import dagster as dg

from covr_core.dedup.failures import open_failures
from covr_pipelines.resources import ObjectStoreResource, PostgresResource

UPLOAD_PREFIX = "uploads/"
# Objects can appear in a listing later than newer ones (a slow upload keeps its start time as
# last-modified), so each tick re-lists this far behind the high-water mark; keys already
# submitted inside that window are remembered in the cursor and skipped.
OVERLAP = timedelta(minutes=15)
MAX_RUNS_PER_TICK = 50


@dataclass
class UploadCursor:
    """The sensor's durable state: a last-modified high-water mark and the keys submitted near it."""

    high_water: datetime | None = None
    recent: dict[str, str] = field(default_factory=dict)  # "key@etag" -> last_modified ISO

    @classmethod
    def parse(cls, raw: str | None) -> "UploadCursor":
        if not raw:
            return cls()
        data = json.loads(raw)
        hw = data.get("high_water")
        return cls(datetime.fromisoformat(hw) if hw else None, dict(data.get("recent", {})))

    def serialize(self) -> str:
        return json.dumps(
            {"high_water": self.high_water.isoformat() if self.high_water else None, "recent": self.recent},
            sort_keys=True,
        )

    @property
    def listing_since(self) -> datetime | None:
        return self.high_water - OVERLAP if self.high_water else None


def plan_batches(objects, cursor: UploadCursor, batch_size: int, max_runs: int):
    """Pure planning: which new objects go into which run, and the cursor after those runs.

    Objects are taken in (last_modified, key) order, so the high-water mark only moves past
    objects that were actually submitted.
    """
    fresh = sorted(
        (o for o in objects if f"{o.key}@{o.etag}" not in cursor.recent),
        key=lambda o: (o.last_modified, o.key),
    )[: batch_size * max_runs]
    batches = [fresh[i : i + batch_size] for i in range(0, len(fresh), batch_size)]
    recent = dict(cursor.recent)
    high_water = cursor.high_water
    for o in fresh:
        recent[f"{o.key}@{o.etag}"] = o.last_modified.isoformat()
        high_water = max(high_water, o.last_modified) if high_water else o.last_modified
    if high_water:
        horizon = high_water - OVERLAP
        recent = {k: t for k, t in recent.items() if datetime.fromisoformat(t) >= horizon}
    return batches, UploadCursor(high_water, recent)


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


def build_upload_sensor(job, *, batch_size: int = 64, minimum_interval_seconds: int = 30):
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
        batches, next_cursor = plan_batches(listed, cursor, batch_size, MAX_RUNS_PER_TICK)
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
