"""Uploaded photos become media.image rows: validated, hashed and thumbnailed, or rejected with a reason."""


from concurrent.futures import ThreadPoolExecutor

import dagster as dg

from covr_core.imaging import ImageLimits, ImageRejected, inspect_image, sha256_hex, thumbnail_jpeg
from covr_core.ingest import ImageRecord, existing_image, record_batch, record_image, user_exists
from covr_core.storage import derived_key, parse_upload_key
from covr_pipelines.resources import IngestPolicyResource, ObjectStoreResource, PostgresResource

GROUP = "ingestion"


class IngestBatchConfig(dg.Config):
    """The upload objects this run ingests, as the sensor or the CLI listed them."""

    object_keys: list[str]


def _examine(store, key: str, limits: ImageLimits):
    """Read, validate and hash one object: (head, sha256, inspected, rejection reason).

    A bad image is not an exception here: its rejection is returned and recorded like any result.
    """
    head = store.head(key)
    if head.size > limits.max_bytes:
        # Refuse before downloading: an oversized object costs no transfer.
        reason = f"file is {head.size / 1e6:.1f} MB, over the {limits.max_bytes / 1e6:.0f} MB limit"
        return head, None, None, reason
    data = store.get(key)
    try:
        inspected = inspect_image(data, limits)
    except ImageRejected as exc:
        return head, sha256_hex(data), None, exc.reason
    return head, inspected.sha256, inspected, None


@dg.asset(group_name=GROUP, kinds={"python", "postgres", "s3"})
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
    counts = {"accepted": 0, "rejected": 0, "already_recorded": 0, "not_an_upload": 0}
    rejections = []

    with postgres.connection() as conn:
        record_batch(conn, context.run_id, config.object_keys)
        todo = []
        for key in config.object_keys:
            parsed = parse_upload_key(key)
            if parsed is None or not user_exists(conn, parsed[0]):
                counts["not_an_upload"] += 1
                context.log.warning(f"{key}: skipped, not uploads/{{user_id}}/{{upload_id}}.{{ext}} of a known user")
            elif existing_image(conn, key):
                counts["already_recorded"] += 1
            else:
                todo.append((key, parsed[0]))

        with ThreadPoolExecutor(max_workers=policy.workers) as pool:
            results = pool.map(lambda item: _examine(store, item[0], limits), todo)
            for (key, uploader_id), (head, sha256, inspected, reason) in zip(todo, results):
                record = ImageRecord(object_key=key, etag=head.etag, uploader_id=uploader_id, byte_size=head.size,
                                     status="rejected" if reason else "accepted", rejection_reason=reason,
                                     sha256=sha256)
                if inspected is not None:
                    thumb_key = derived_key(key, "thumbnail")
                    store.put(thumb_key, thumbnail_jpeg(inspected.preview), content_type="image/jpeg")
                    record = ImageRecord(
                        **{**record.__dict__, "sha256": inspected.sha256, "phash": inspected.phash,
                           "format": inspected.format, "width": inspected.width, "height": inspected.height,
                           "thumbnail_key": thumb_key},
                    )
                image_id, _ = record_image(conn, record)
                counts[record.status] += 1
                if reason:
                    rejections.append({"object_key": key, "image_id": image_id, "reason": reason})
                    context.log.warning(f"image {image_id} ({key}) rejected: {reason}")
                else:
                    context.log.info(f"image {image_id} ({key}) accepted: {inspected.format} "
                                     f"{inspected.width}x{inspected.height}, phash {inspected.phash & (2**64 - 1):016x}")

    return dg.MaterializeResult(
        metadata={
            **counts,
            "objects": len(config.object_keys),
            "rejections": dg.MetadataValue.json(rejections),
        }
    )


@dg.asset_check(asset=uploaded_images, description="Every object of the run's batch has a media.image row.")
def every_object_recorded(context: dg.AssetCheckExecutionContext, postgres: PostgresResource) -> dg.AssetCheckResult:
    with postgres.connection() as conn:
        rows = conn.execute(
            """
            select k.object_key
            from ingest.batch b, unnest(b.object_keys) as k(object_key)
            where b.run_id = %s and not exists (select 1 from media.image i where i.object_key = k.object_key)
            """,
            (context.op_execution_context.run_id,),
        ).fetchall()
    missing = [r["object_key"] for r in rows]
    return dg.AssetCheckResult(
        passed=not missing,
        metadata={"missing": len(missing), "examples": dg.MetadataValue.json(missing[:20])},
    )
