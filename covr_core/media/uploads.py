"""Uploads through the API: a file streamed into the local store, or a presigned S3 PUT; and what ingest made of it.

An upload is a row of media.upload. Its id is a fresh uuid that names the object key,
`uploads/{uploader_id}/{upload_id}.{ext}` (`object_key_for_upload`), exactly where the ingest sensor lists, so the
upload is ingested like any other object; `GET /v1/uploads/{id}` maps the id back to the key through the row.

* Local store (`direct`): the request body is the file. It is written, as it arrives, to a hidden temp file in the
  store (a `.covr-tmp-` name, which listings skip), counted against the size limit; past the limit it is deleted
  and PayloadTooLarge raised, so nothing is left behind. The first bytes must be a JPEG, PNG, WebP or HEIC
  signature. `receive_file` then records the row and moves the file under its key in one step, so ingest never
  sees a partial file or a file without its row.
* S3 (`presigned`): the member gets a PUT URL signed for the bucket as browsers reach it
  (`s3_public_endpoint_url`, else `s3_endpoint_url`), valid for `PRESIGN_SECONDS`, with the Content-Type signed
  in. S3 cannot cap the size of a presigned PUT; ingest's own limit (`max_image_bytes`) refuses an oversized
  object before downloading it.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import time
import uuid
from datetime import timedelta
from pathlib import Path

import psycopg
from psycopg.rows import dict_row

from covr_core.media.imaging import sniff_format
from covr_core.media.storage import (
    _TEMP_PREFIX,
    LocalObjectStore,
    ObjectStore,
    S3ObjectStore,
    object_key_for_upload,
)
from covr_core.platform.settings import Settings
from covr_core.shared.errors import InvalidInput, NotFound, PayloadTooLarge
from covr_core.shared.ids import is_uuid

# The formats ingest accepts, by the MIME type a client declares and by the format sniffed from the bytes.
CONTENT_TYPE_EXTENSIONS = {
    "image/jpeg": "jpg", "image/png": "png", "image/webp": "webp", "image/heic": "heic", "image/heif": "heif",
}  # fmt: skip
_FORMAT_CONTENT_TYPES = {"jpeg": "image/jpeg", "png": "image/png", "webp": "image/webp", "heif": "image/heic"}
PRESIGN_SECONDS = 15 * 60
THUMBNAIL_URL_SECONDS = 60 * 60
_SNIFF_BYTES = 64


def object_store(settings: Settings) -> ObjectStore:
    """The store `settings` name: the S3 bucket when one is set, else the local folder in COVR_HOME."""
    if settings.uses_s3:
        return _s3(settings, settings.s3_endpoint_url)
    return LocalObjectStore(settings.objects_dir)


def signing_store(settings: Settings) -> S3ObjectStore | None:
    """The bucket as browsers reach it, for presigned URLs (signing talks to no server); None for the local store."""
    if not settings.uses_s3:
        return None
    return _s3(settings, settings.s3_public_endpoint_url or settings.s3_endpoint_url)


def _s3(settings: Settings, endpoint_url: str | None) -> S3ObjectStore:
    secret = settings.s3_secret_access_key.get_secret_value() if settings.s3_secret_access_key else None
    return S3ObjectStore(
        bucket=settings.s3_bucket,
        endpoint_url=endpoint_url,
        region=settings.s3_region,
        access_key_id=settings.s3_access_key_id,
        secret_access_key=secret,
        path_style=settings.s3_path_style,
    )


def presigned_get_url(signer: S3ObjectStore, key: str, *, expires_in: int = THUMBNAIL_URL_SECONDS) -> str:
    """A GET URL for one object, signed for the endpoint `signer` addresses."""
    return signer.client.generate_presigned_url(
        "get_object", Params={"Bucket": signer.bucket, "Key": key}, ExpiresIn=expires_in, HttpMethod="GET"
    )


def _human(n: int) -> str:
    return f"{n / (1024 * 1024):.1f} MB" if n >= 1024 * 1024 else f"{n} bytes"


def _too_large(max_bytes: int, what: str) -> PayloadTooLarge:
    return PayloadTooLarge(f"{what} is over the upload limit of {_human(max_bytes)} ({max_bytes} bytes)",
                           max_bytes=max_bytes)


class IncomingFile:
    """A file being received into the local store, invisible to ingest until `receive_file` places it.

    Use as a context manager: leaving the block without `receive_file` having placed the file deletes it.
    """

    def __init__(self, store: LocalObjectStore, *, uploader_id: str, max_bytes: int,
                 declared_size: int | None = None):
        if declared_size is not None and declared_size > max_bytes:
            raise _too_large(max_bytes, f"the declared upload of {_human(declared_size)}")
        self.store = store
        self.uploader_id = uploader_id
        self.max_bytes = max_bytes
        self.upload_id = str(uuid.uuid4())
        self.byte_size = 0
        self._sha256 = hashlib.sha256()
        self._head = b""
        self.content_type: str | None = None
        self.object_key: str | None = None
        # Beside the final folder, on the same file system, so placing it is an atomic rename.
        folder = store.root / "uploads"
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=_TEMP_PREFIX, dir=folder)
        self._tmp: Path | None = Path(tmp)
        self._file = os.fdopen(fd, "wb")

    def __enter__(self) -> IncomingFile:
        return self

    def __exit__(self, *exc) -> None:
        self.discard()

    def write(self, chunk: bytes) -> None:
        """Append a chunk; past the limit the file is deleted and PayloadTooLarge raised."""
        if self._tmp is None:
            raise RuntimeError("the upload was already discarded or placed")
        self.byte_size += len(chunk)
        if self.byte_size > self.max_bytes:
            self.discard()
            raise _too_large(self.max_bytes, "the upload")
        if len(self._head) < _SNIFF_BYTES:
            self._head += chunk[: _SNIFF_BYTES - len(self._head)]
        self._sha256.update(chunk)
        self._file.write(chunk)

    def finish(self) -> None:
        """Everything arrived: check it is an image ingest accepts, flush it to disk and fix its key."""
        fmt = sniff_format(self._head)
        if self.byte_size == 0 or fmt is None:
            self.discard()
            what = "empty" if self.byte_size == 0 else "not a JPEG, PNG, WebP or HEIC image (by its first bytes)"
            raise InvalidInput(f"the upload is {what}; send the photo itself as the request body")
        self.content_type = _FORMAT_CONTENT_TYPES[fmt]
        self.object_key = object_key_for_upload(
            self.uploader_id, self.upload_id, CONTENT_TYPE_EXTENSIONS[self.content_type]
        )
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()

    @property
    def sha256(self) -> str:
        return self._sha256.hexdigest()

    @property
    def fingerprint(self) -> dict:
        """What identifies the upload's content, for an idempotent replay."""
        return {"sha256": self.sha256, "byte_size": self.byte_size, "content_type": self.content_type}

    def place(self) -> None:
        """Move the finished file under its key (atomically), stamped with the current time for the sensor."""
        if self._tmp is None or self.object_key is None:
            raise RuntimeError("finish() the upload before placing it")
        final = self.store.root.joinpath(*self.object_key.split("/"))
        final.parent.mkdir(parents=True, exist_ok=True)
        # As LocalObjectStore.put does: the kernel's coarse file clock could stamp it behind the sensor's mark.
        now_ns = time.time_ns() // 1000 * 1000
        os.utime(self._tmp, ns=(now_ns, now_ns))
        os.replace(self._tmp, final)
        self._tmp = None

    def discard(self) -> None:
        if self._tmp is None:
            return
        if not self._file.closed:
            self._file.close()
        self._tmp.unlink(missing_ok=True)
        self._tmp = None


def _upload_public(row: dict, status: str = "pending", **extra) -> dict:
    return {
        "upload_id": str(row["upload_id"]),
        "object_key": row["object_key"],
        "method": row["method"],
        "content_type": row["content_type"],
        "byte_size": row["byte_size"],
        "created_at": row["created_at"],
        "status": status,
        **extra,
    }


def receive_file(conn: psycopg.Connection, incoming: IncomingFile) -> dict:
    """Record a finished IncomingFile and place it under its key; the upload, status `pending`.

    The row is written first and the file placed last inside the transaction, so a failure before the commit
    leaves at worst an object ingest will still pick up, never a row without its object.
    """
    if incoming.object_key is None:
        raise RuntimeError("finish() the upload before receiving it")
    with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(
            """
            insert into media.upload (upload_id, uploader_id, object_key, method, content_type, byte_size, sha256)
            values (%s, %s, %s, 'direct', %s, %s, %s)
            returning upload_id, object_key, method, content_type, byte_size, created_at
            """,
            (incoming.upload_id, incoming.uploader_id, incoming.object_key, incoming.content_type,
             incoming.byte_size, incoming.sha256),
        ).fetchone()
        incoming.place()
    return _upload_public(row, upload_url=None, upload_headers={}, expires_at=None)


def presign_upload(
    conn: psycopg.Connection,
    signer: S3ObjectStore,
    *,
    uploader_id: str,
    content_type: str,
    expires_in: int = PRESIGN_SECONDS,
) -> dict:
    """A new upload with a presigned PUT URL; the client PUTs the photo there with the given headers."""
    content_type = content_type.strip().lower()
    ext = CONTENT_TYPE_EXTENSIONS.get(content_type)
    if ext is None:
        raise InvalidInput(
            f"content type {content_type!r} is not one of {', '.join(CONTENT_TYPE_EXTENSIONS)}"
        )
    upload_id = str(uuid.uuid4())
    key = object_key_for_upload(uploader_id, upload_id, ext)
    url = signer.presigned_put_url(key, expires_in=expires_in, content_type=content_type)
    with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(
            """
            insert into media.upload (upload_id, uploader_id, object_key, method, content_type, url_expires_at)
            values (%s, %s, %s, 'presigned', %s, now() + %s)
            returning upload_id, object_key, method, content_type, byte_size, created_at, url_expires_at
            """,
            (upload_id, uploader_id, key, content_type, timedelta(seconds=expires_in)),
        ).fetchone()
    return _upload_public(row, upload_url=url, upload_headers={"Content-Type": content_type},
                          expires_at=row["url_expires_at"])


def upload_status(conn: psycopg.Connection, *, uploader_id: str, upload_id: str) -> dict:
    """Where ingest stands with one of my uploads; another member's upload is NotFound, like a missing one.

    status: `pending` (not ingested yet, or accepted but not yet decided), `accepted` (decided), `rejected` (the
    file is bad; final) or `failed` (ingest could not process it now; retried). `reason` is the rejection's or the
    failure's words; `decision` and `match_reason` are the dedup decision's; `book` the identified book.
    """
    row = None
    if is_uuid(upload_id):
        with conn.cursor(row_factory=dict_row) as cur:
            row = cur.execute(
                """
                select u.upload_id, u.object_key, u.method, u.content_type, u.byte_size, u.created_at,
                       d.image_id, d.status as image_status, d.rejection_reason, d.failure_stage,
                       d.failure_reason, d.decision, d.match_reason, d.copy_id, d.identification_source,
                       d.confidence,
                       f.stage as early_stage, f.reason as early_reason,
                       b.book_id, b.isbn13, b.title, b.authors, b.published_year
                from media.upload u
                left join read_model.ingest_decision d on d.object_key = u.object_key
                -- A failure before the image had a row (the store could not be read) has only the key.
                left join ingest.failure f on f.object_key = u.object_key and f.resolved_at is null
                left join catalog.book b on b.book_id = d.book_id
                where u.upload_id = %s and u.uploader_id = %s
                """,
                (upload_id, uploader_id),
            ).fetchone()
    if row is None:
        raise NotFound(f"upload {upload_id} not found")
    if row["image_id"] is None:
        failed = row["early_stage"] is not None
        status = "failed" if failed else "pending"
        reason = f"{row['early_stage']}: {row['early_reason']}" if failed else None
    elif row["image_status"] == "failed":
        status, reason = "failed", f"{row['failure_stage']}: {row['failure_reason']}"
    elif row["image_status"] == "rejected":
        status, reason = "rejected", row["rejection_reason"]
    else:
        status, reason = ("accepted" if row["decision"] else "pending"), None
    book = None
    if row["book_id"] is not None:
        book = {"book_id": str(row["book_id"]), "isbn13": row["isbn13"], "title": row["title"],
                "authors": list(row["authors"]), "published_year": row["published_year"]}
    return _upload_public(
        row,
        status,
        reason=reason,
        image_id=str(row["image_id"]) if row["image_id"] else None,
        decision=row["decision"],
        match_reason=row["match_reason"],
        identification_source=row["identification_source"],
        confidence=row["confidence"],
        book=book,
        copy_id=str(row["copy_id"]) if row["copy_id"] else None,
    )

