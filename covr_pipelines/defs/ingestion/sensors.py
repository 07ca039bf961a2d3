"""Notice new upload objects and ask for ingest runs of at most N images each."""


import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import dagster as dg

from covr_pipelines.resources import ObjectStoreResource

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
    members = sorted(f"{o.key}@{o.etag}" for o in batch)
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
