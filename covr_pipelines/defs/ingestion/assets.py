"""Uploaded photos become media.image rows: validated, hashed and thumbnailed, rejected with a reason, or failed."""


import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import dagster as dg

from covr_core.dedup.failures import describe_failure, failures_for, is_database_outage, record_failure, resolve_failure
from covr_core.media.imaging import ImageLimits, ImageRejected, inspect_image, sha256_hex, thumbnail_jpeg
from covr_core.contact.accounts import user_exists
from covr_core.dedup.ingest import ImageRecord, existing_image, record_batch, record_image, refuse_overwrite
from covr_core.media.storage import derived_key, parse_upload_key
from covr_pipelines.resources import IngestPolicyResource, ObjectStoreResource, PostgresResource

GROUP = "ingestion"


class IngestBatchConfig(dg.Config):
    """The upload objects this run ingests, as the sensor or the CLI listed them."""

    object_keys: list[str] = []
    # A failed image re-run alone (retry_image_job, from the UI's launchpad): its image id or object key.
    image_ids: list[str] = []


def batch_run_id(context) -> str:
    """The run whose batch this is: a re-execution works on the batch of the run it re-executes."""
    run = context.dagster_run
    return run.root_run_id or run.run_id


def fail_image(context, conn, image: dict, stage: str, exc: BaseException, run_id: str) -> dict:
    """Record an accepted image's failure at `stage` for retry, log it, and return it for the asset's metadata."""
    image_id, key = str(image["image_id"]), image["object_key"]
    failure = record_failure(conn, object_key=key, stage=stage, image_id=image_id,
                             uploader_id=str(image["uploader_id"]), run_id=run_id,
                             reason=describe_failure(stage, exc))
    context.log.error(f"image {image_id} ({key}) failed (attempt {failure.attempts}), will be retried: {failure.reason}")
    return {"image_id": image_id, "object_key": key, "reason": failure.reason, "attempts": failure.attempts}


@dataclass
class Examined:
    """One object read, validated and hashed, or the reason it is rejected (bad file) or failed (try again)."""

    key: str
    uploader_id: str
    record: ImageRecord | None = None
    failure: str | None = None


def _examine(store, key: str, uploader_id: str, limits: ImageLimits) -> Examined:
    """Read, validate, hash and thumbnail one object. Never raises: a bad file is a rejection, any error a failure."""
    try:
        head = store.head(key)
        record = ImageRecord(object_key=key, etag=head.etag, uploader_id=uploader_id, byte_size=head.size,
                             status="accepted")
        if head.size > limits.max_bytes:
            # Refuse before downloading: an oversized object costs no transfer.
            reason = f"file is {head.size / 1e6:.1f} MB, over the {limits.max_bytes / 1e6:.0f} MB limit"
            return Examined(key, uploader_id, _rejected(record, reason))
        data = store.get(key)
        try:
            inspected = inspect_image(data, limits)
        except ImageRejected as exc:
            return Examined(key, uploader_id, _rejected(record, exc.reason, sha256_hex(data)))
        thumb_key = derived_key(key, "thumbnail")
        store.put(thumb_key, thumbnail_jpeg(inspected.preview), content_type="image/jpeg")
        return Examined(key, uploader_id, ImageRecord(
            **{**record.__dict__, "sha256": inspected.sha256, "phash": inspected.phash, "format": inspected.format,
               "width": inspected.width, "height": inspected.height, "thumbnail_key": thumb_key},
        ))
    except Exception as exc:  # noqa: BLE001 - one object's error must not sink the batch
        return Examined(key, uploader_id, failure=describe_failure("upload", exc))


def _rejected(record: ImageRecord, reason: str, sha256: str | None = None) -> ImageRecord:
    return ImageRecord(**{**record.__dict__, "status": "rejected", "rejection_reason": reason, "sha256": sha256})


@dg.asset(group_name=GROUP, owners=[f"team:{GROUP}"], kinds={"python", "postgres", "s3"})
def uploaded_images(
    context: dg.AssetExecutionContext,
    config: IngestBatchConfig,
    postgres: PostgresResource,
    object_store: ObjectStoreResource,
    policy: IngestPolicyResource,
) -> dg.MaterializeResult:
    """Validate and hash each uploaded photo; record it as accepted or rejected, with an ImageUploaded event."""
    store = object_store.store()
    limits = ImageLimits(max_bytes=policy.max_image_bytes, max_pixels=policy.max_image_pixels)
    counts = {"accepted": 0, "rejected": 0, "failed": 0, "already_recorded": 0, "overwrite_refused": 0,
              "not_an_upload": 0}
    problems = []
    run_id = batch_run_id(context)

    with postgres.connection() as conn:
        object_keys = list(config.object_keys)
        if config.image_ids:
            failures, unknown = failures_for(conn, config.image_ids)
            if unknown:
                raise dg.Failure(f"no failed image named {', '.join(unknown)}: only an image whose ingest failed "
                                 "is re-run alone (see ingest.failure)")
            object_keys += [f["object_key"] for f in failures]
        record_batch(conn, run_id, object_keys)
        todo = []
        for key in dict.fromkeys(object_keys):  # a key listed twice is one object
            parsed = parse_upload_key(key)
            if parsed is None or not user_exists(conn, parsed[0]):
                counts["not_an_upload"] += 1
                context.log.warning(f"{key}: skipped, not uploads/{{user_id}}/{{upload_id}}.{{ext}} of a known user")
                continue
            known = existing_image(conn, key)
            if known is None:
                todo.append((key, parsed[0]))
                continue
            counts["already_recorded"] += 1
            _refuse_if_overwritten(context, conn, store, key, known, counts, problems)

        # Reading and decoding happen here, outside any transaction; each result is then its own unit of work.
        started = time.monotonic()
        with ThreadPoolExecutor(max_workers=policy.workers) as pool:
            for examined in pool.map(lambda item: _examine(store, item[0], item[1], limits), todo):
                _record(context, conn, examined, run_id, counts, problems)

    return dg.MaterializeResult(
        metadata={
            **counts,
            "objects": len(object_keys),
            "by_reason": dg.MetadataValue.json(reason_counts(problems)),
            "rejected_and_failed": dg.MetadataValue.md(problems_markdown(problems)),
            "seconds_examine_and_record": round(time.monotonic() - started, 3),
            "problems": dg.MetadataValue.json(problems),
        }
    )


def reason_counts(problems: list[dict]) -> dict[str, int]:
    """Pure: how many images were rejected or failed for each reason (its words before any detail in brackets)."""
    counts: dict[str, int] = {}
    for p in problems:
        reason = f"{p['status']}: {(p.get('reason') or '?').split(' (')[0]}"
        counts[reason] = counts.get(reason, 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def problems_markdown(problems: list[dict], *, limit: int = 50) -> str:
    """Pure: the rejected and failed images as a markdown table an operator can act on, with the retry command."""
    if not problems:
        return "No image was rejected or failed in this run."
    rows = ["| status | reason | object key | image | thumbnail (object key) |", "|---|---|---|---|---|"]
    for p in problems[:limit]:
        image = p.get("image_id") or "-"
        # A thumbnail exists once the image decoded: for failures after the upload stage, not for rejected files.
        thumb = f"`{derived_key(p['object_key'], 'thumbnail')}`" if p.get("status") == "failed" and p.get(
            "image_id") else "-"
        reason = str(p.get("reason") or "").replace("|", "\\|")
        rows.append(f"| {p['status']} | {reason} | `{p['object_key']}` | {image} | {thumb} |")
    more = f"\n\n{len(problems) - limit} more in the `problems` entry." if len(problems) > limit else ""
    return "\n".join(rows) + more + "\n\nRe-run a failed image alone: `covr ingest --retry IMAGE_ID`, or launch " \
        "`retry_image_job` with `image_ids: [IMAGE_ID]`."


def _refuse_if_overwritten(context, conn, store, key: str, known: dict, counts: dict, problems: list) -> None:
    try:
        etag = store.head(key).etag
    except Exception as exc:  # noqa: BLE001 - the object is already recorded; a failed HEAD changes nothing
        context.log.warning(f"{key}: already recorded as image {known['image_id']}; HEAD failed ({exc})")
        return
    if known["etag"] is None or etag == known["etag"]:
        return
    reason, first_time = refuse_overwrite(conn, key, etag, str(known["image_id"]))
    counts["overwrite_refused"] += 1
    problems.append({"object_key": key, "image_id": str(known["image_id"]), "status": "overwrite_refused",
                     "reason": reason})
    if first_time:
        context.log.warning(reason)


def _record(context, conn, examined: Examined, run_id: str, counts: dict, problems: list) -> None:
    key = examined.key
    if examined.failure is None:
        rec = examined.record
        try:
            with conn.transaction():
                image_id, _ = record_image(conn, rec)
                resolve_failure(conn, key, "upload")
        except Exception as exc:
            if is_database_outage(exc):
                raise
            examined.failure = describe_failure("upload", exc)
        else:
            counts[rec.status] += 1
            if rec.status == "rejected":
                problems.append({"object_key": key, "image_id": image_id, "status": "rejected",
                                 "reason": rec.rejection_reason})
                context.log.warning(f"image {image_id} ({key}) rejected: {rec.rejection_reason}")
            else:
                context.log.info(f"image {image_id} ({key}) accepted: {rec.format} {rec.width}x{rec.height}, "
                                 f"phash {rec.phash & (2**64 - 1):016x}")
            return
    failure = record_failure(conn, object_key=key, stage="upload", reason=examined.failure, run_id=run_id,
                             uploader_id=examined.uploader_id)
    counts["failed"] += 1
    problems.append({"object_key": key, "image_id": None, "status": "failed", "reason": failure.reason,
                     "attempts": failure.attempts})
    context.log.error(f"{key} failed (attempt {failure.attempts}), will be retried: {failure.reason}")


UPLOAD_KEYS_OF_BATCH = """
select k.object_key,
       exists (select 1 from media.image i where i.object_key = k.object_key) as has_image,
       exists (select 1 from ingest.failure f where f.object_key = k.object_key and f.resolved_at is null)
           as has_failure
from ingest.batch b, unnest(b.object_keys) as k(object_key)
where b.run_id = %s
"""


@dg.asset_check(
    asset=uploaded_images,
    description="Every upload object of the run's batch is recorded: a media.image row, or a failure to retry.",
)
def every_object_recorded(context: dg.AssetCheckExecutionContext, postgres: PostgresResource) -> dg.AssetCheckResult:
    with postgres.connection() as conn:
        rows = conn.execute(UPLOAD_KEYS_OF_BATCH, (batch_run_id(context.op_execution_context),)).fetchall()
        # Keys skipped as not_an_upload are not uploads: nothing is owed for them.
        uploads = [r for r in rows if (p := parse_upload_key(r["object_key"])) and user_exists(conn, p[0])]
    missing = [r["object_key"] for r in uploads if not r["has_image"] and not r["has_failure"]]
    failed = [r["object_key"] for r in uploads if r["has_failure"]]
    return dg.AssetCheckResult(
        passed=not missing,
        metadata={"uploads": len(uploads), "missing": len(missing), "failed": len(failed),
                  "examples": dg.MetadataValue.json(missing[:20])},
    )
