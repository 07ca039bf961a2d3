"""Object storage for photos: one interface, a local folder (embedded default) and S3 (MinIO, R2, AWS)."""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

UPLOAD_EXTENSIONS: tuple[str, ...] = ("jpg", "jpeg", "png", "webp", "heic", "heif")
DERIVED_KINDS: tuple[str, ...] = ("normalized", "thumbnail")

# S3 refuses keys over 1024 UTF-8 bytes and MaxKeys over 1000; the local store applies the same limits
# so that a key or page size that works embedded also works against a bucket.
MAX_KEY_BYTES = 1024
MAX_PAGE_SIZE = 1000
# SigV4 presigned URLs are valid for at most seven days.
MAX_PRESIGN_SECONDS = 7 * 24 * 3600

# Temp files of in-flight local puts start with this; keys may not, so a listing can skip them safely.
_TEMP_PREFIX = ".covr-tmp-"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

_ID = r"[A-Za-z0-9_-]{1,128}"
_ID_RE = re.compile(_ID)
_UPLOAD_KEY_RE = re.compile(rf"uploads/({_ID})/({_ID})\.({'|'.join(UPLOAD_EXTENSIONS)})")


@dataclass(frozen=True)
class StoredObject:
    key: str
    etag: str  # opaque; changes whenever the content changes (the ingest sensor's run key is key@etag)
    size: int
    last_modified: datetime  # timezone-aware UTC


class ObjectNotFound(KeyError):
    def __init__(self, key: str, store: str):
        super().__init__(key)
        self.key = key
        self.store = store

    def __str__(self) -> str:
        # KeyError's own __str__ would print only the repr of the key.
        return f"object {self.key!r} not found in {self.store}"


def _from_ns(ns: int) -> datetime:
    # Integer arithmetic: a float timestamp can round up a microsecond and misplace a file against `since`.
    return _EPOCH + timedelta(microseconds=ns // 1000)


def _check_key(key: str) -> str:
    """Both stores accept the same keys, so nothing written embedded becomes unreadable on S3 or vice versa."""
    if not isinstance(key, str) or not key:
        raise ValueError(f"object key {key!r} is empty or not a string")
    if key.startswith("/"):
        raise ValueError(f"object key {key!r} is absolute; keys are relative to the store")
    if "\\" in key:
        raise ValueError(f"object key {key!r} contains a backslash; use '/' between parts")
    if any(ord(c) < 0x20 or c == "\x7f" for c in key):
        raise ValueError(f"object key {key!r} contains a control character")
    if len(key.encode("utf-8")) > MAX_KEY_BYTES:
        raise ValueError(f"object key {key[:40]!r}... is longer than {MAX_KEY_BYTES} bytes")
    for part in key.split("/"):
        if part == "":
            raise ValueError(f"object key {key!r} has an empty part (leading, trailing or doubled '/')")
        if part in (".", ".."):
            raise ValueError(f"object key {key!r} contains a {part!r} part")
        if part.startswith(_TEMP_PREFIX):
            raise ValueError(f"object key {key!r} uses the reserved prefix {_TEMP_PREFIX!r}")
    return key


def _check_prefix(prefix: str) -> str:
    # A prefix is a key's beginning, not necessarily whole parts ("uploads/u1" also matches "uploads/u10/...").
    if prefix and (prefix.startswith("/") or "\\" in prefix or ".." in prefix.split("/")):
        raise ValueError(f"listing prefix {prefix!r} must be relative, without '..' parts or backslashes")
    return prefix


def _check_listing(since: datetime | None, page_size: int) -> None:
    if since is not None and since.tzinfo is None:
        raise ValueError(f"since={since!r} is naive; pass a timezone-aware datetime (UTC)")
    if not 1 <= page_size <= MAX_PAGE_SIZE:
        raise ValueError(f"page_size={page_size} is outside 1..{MAX_PAGE_SIZE}")


class ObjectStore(ABC):
    """Where originals and derived images live. Keys are '/'-separated and relative; see `_check_key`."""

    @abstractmethod
    def put(self, key: str, data: bytes, *, content_type: str | None = None) -> StoredObject: ...

    @abstractmethod
    def get(self, key: str) -> bytes: ...

    @abstractmethod
    def head(self, key: str) -> StoredObject: ...

    @abstractmethod
    def list_since(
        self, prefix: str, since: datetime | None, *, page_size: int = 1000
    ) -> Iterator[StoredObject]:
        """Every object under `prefix` with last_modified >= since (all when since is None).

        Listing order, which is not time order: callers that need time order sort by (last_modified, key).
        """

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove the object; deleting a missing key is not an error (as on S3)."""

    @abstractmethod
    def presigned_put_url(self, key: str, *, expires_in: int = 3600, content_type: str | None = None) -> str: ...

    @abstractmethod
    def describe(self) -> str: ...

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.describe()}>"


class LocalObjectStore(ObjectStore):
    """Keys are files under `root`.

    The etag is the md5 hex of the content, as S3 gives for a single-part upload, so it changes exactly when
    the content does and is the same across processes and restarts. It is not stored anywhere: `put` knows
    it already, `head` hashes the file, and `list_since` filters on the file's mtime before hashing, so a
    sensor polling with a recent high-water mark only hashes the few new files. Hashes are cached per
    process against (inode, size, mtime_ns, ctime_ns); ctime cannot be set back by a writer, so any
    rewrite, in place or by rename, misses the cache.
    """

    _CACHE_LIMIT = 100_000

    def __init__(self, root: Path | str):
        self.root = Path(root).expanduser().resolve()
        self._etags: dict[str, tuple[tuple[int, int, int, int], str]] = {}
        self._lock = threading.Lock()

    def describe(self) -> str:
        return f"local folder {self.root}"

    def _path(self, key: str) -> Path:
        return self.root.joinpath(*_check_key(key).split("/"))

    def _key(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix()

    def _remember(self, path: Path, st: os.stat_result, etag: str) -> None:
        with self._lock:
            if len(self._etags) >= self._CACHE_LIMIT:
                self._etags.clear()
            self._etags[str(path)] = ((st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns), etag)

    def _etag(self, path: Path, st: os.stat_result) -> str:
        signature = (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
        cached = self._etags.get(str(path))
        if cached and cached[0] == signature:
            return cached[1]
        digest = hashlib.md5(usedforsecurity=False)
        with path.open("rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
        etag = digest.hexdigest()
        self._remember(path, st, etag)
        return etag

    def _stored(self, path: Path, st: os.stat_result, etag: str | None = None) -> StoredObject:
        return StoredObject(
            key=self._key(path),
            etag=etag or self._etag(path, st),
            size=st.st_size,
            last_modified=_from_ns(st.st_mtime_ns),
        )

    def put(self, key: str, data: bytes, *, content_type: str | None = None) -> StoredObject:
        # content_type is accepted for interface parity; a file has nowhere to keep it.
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=_TEMP_PREFIX, dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            # The kernel stamps files from a coarse clock (a few ms behind time.time_ns()), so an object
            # written just after a caller's datetime.now() could look older than it; stamp it precisely.
            now_ns = time.time_ns() // 1000 * 1000  # whole microseconds, all a datetime can carry
            os.utime(tmp, ns=(now_ns, now_ns))
            # Readers see the old file or the new one, never a partial write.
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        st = path.stat()
        etag = hashlib.md5(data, usedforsecurity=False).hexdigest()
        self._remember(path, st, etag)
        return self._stored(path, st, etag)

    def get(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise ObjectNotFound(key, self.describe()) from None

    def head(self, key: str) -> StoredObject:
        path = self._path(key)
        try:
            st = path.stat()
            if not path.is_file():
                raise FileNotFoundError(path)
            return self._stored(path, st)
        except (FileNotFoundError, NotADirectoryError):
            raise ObjectNotFound(key, self.describe()) from None

    def list_since(
        self, prefix: str, since: datetime | None, *, page_size: int = 1000
    ) -> Iterator[StoredObject]:
        # page_size only matters to S3; it is checked here too so a bad value fails embedded first.
        _check_listing(since, page_size)
        return self._list(_check_prefix(prefix), since)

    def _list(self, prefix: str, since: datetime | None) -> Iterator[StoredObject]:
        # Walk from the deepest folder the prefix names, then match the rest of the prefix on whole keys.
        folder = self.root.joinpath(*prefix.split("/")[:-1]) if "/" in prefix else self.root
        for path, st in self._walk(folder):
            if not self._key(path).startswith(prefix):
                continue
            # Compared as datetimes, exactly as head() reports them, so since=head(k).last_modified lists k.
            if since is not None and _from_ns(st.st_mtime_ns) < since:
                continue
            try:
                stored = self._stored(path, st)
            except FileNotFoundError:
                continue  # deleted between the scan and the hash
            yield stored

    def _walk(self, folder: Path) -> Iterator[tuple[Path, os.stat_result]]:
        """Files under folder in S3's order (by whole key), skipping temp files of in-flight puts."""
        try:
            entries = list(os.scandir(folder))
        except (FileNotFoundError, NotADirectoryError):
            return
        # Sorting a folder's name as name + "/" puts its keys exactly where a whole-key sort would.
        entries.sort(key=lambda e: e.name + "/" if e.is_dir(follow_symlinks=False) else e.name)
        for entry in entries:
            if entry.name.startswith(_TEMP_PREFIX):
                continue
            if entry.is_dir(follow_symlinks=False):
                yield from self._walk(Path(entry.path))
            elif entry.is_file(follow_symlinks=False):
                try:
                    yield Path(entry.path), entry.stat(follow_symlinks=False)
                except FileNotFoundError:
                    continue

    def delete(self, key: str) -> None:
        # Empty folders are left behind on purpose: removing them could race a concurrent put into the same folder.
        path = self._path(key)
        try:
            path.unlink(missing_ok=True)
        except IsADirectoryError:
            pass  # a folder is not an object, so there is nothing under this key to delete
        with self._lock:
            self._etags.pop(str(path), None)

    def presigned_put_url(self, key: str, *, expires_in: int = 3600, content_type: str | None = None) -> str:
        raise NotImplementedError(
            f"the local object store has no presigned URLs ({self.describe()}, key {key!r}); "
            "upload through the API, or configure S3 (COVR_S3_BUCKET, COVR_S3_ENDPOINT_URL) for direct uploads"
        )


class S3ObjectStore(ObjectStore):
    """A bucket on any S3-compatible service: MinIO, Cloudflare R2 (region "auto") or AWS.

    Path-style addressing is the default because MinIO and most self-hosted endpoints need it; use
    path_style=False on AWS. Without explicit keys boto3's usual chain applies (environment, profile, role).
    """

    def __init__(
        self,
        *,
        bucket: str,
        endpoint_url: str | None = None,
        region: str = "us-east-1",
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        path_style: bool = True,
        client=None,
    ):
        if not bucket:
            raise ValueError("S3 object store needs a bucket name")
        if (access_key_id is None) != (secret_access_key is None):
            raise ValueError(f"S3 bucket {bucket!r}: pass both access_key_id and secret_access_key, or neither")
        self.bucket = bucket
        self.endpoint_url = endpoint_url
        self.region = region
        if client is None:
            client = boto3.client(
                "s3",
                endpoint_url=endpoint_url,
                region_name=region,
                aws_access_key_id=access_key_id,
                aws_secret_access_key=secret_access_key,
                config=Config(
                    signature_version="s3v4",
                    s3={"addressing_style": "path" if path_style else "virtual"},
                    retries={"max_attempts": 5, "mode": "standard"},
                    connect_timeout=5,
                    read_timeout=60,
                ),
            )
        self.client = client

    def describe(self) -> str:
        where = self.endpoint_url or f"AWS region {self.region}"
        return f"s3://{self.bucket} at {where}"

    def _missing(self, error: ClientError) -> bool:
        code = str(error.response.get("Error", {}).get("Code", ""))
        return code in ("404", "NoSuchKey", "NotFound")

    def _named(self, error: Exception, what: str) -> Exception:
        # botocore's message names the operation and the code, not which bucket or endpoint was asked.
        error.add_note(f"while {what} in {self.describe()}")
        return error

    def put(self, key: str, data: bytes, *, content_type: str | None = None) -> StoredObject:
        params = {"Bucket": self.bucket, "Key": _check_key(key), "Body": data}
        if content_type:
            params["ContentType"] = content_type
        try:
            self.client.put_object(**params)
        except (ClientError, BotoCoreError) as e:
            raise self._named(e, f"putting {key!r}") from None
        # PutObject does not return LastModified, which the caller needs for its high-water mark.
        return self.head(key)

    def get(self, key: str) -> bytes:
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=_check_key(key))
            return response["Body"].read()
        except ClientError as e:
            if self._missing(e):
                raise ObjectNotFound(key, self.describe()) from None
            raise self._named(e, f"getting {key!r}") from None
        except BotoCoreError as e:
            raise self._named(e, f"getting {key!r}") from None

    def head(self, key: str) -> StoredObject:
        try:
            response = self.client.head_object(Bucket=self.bucket, Key=_check_key(key))
        except ClientError as e:
            if self._missing(e):
                raise ObjectNotFound(key, self.describe()) from None
            raise self._named(e, f"reading the metadata of {key!r}") from None
        except BotoCoreError as e:
            raise self._named(e, f"reading the metadata of {key!r}") from None
        return StoredObject(
            key=key,
            etag=response["ETag"].strip('"'),
            size=response["ContentLength"],
            last_modified=response["LastModified"].astimezone(UTC),
        )

    def list_since(
        self, prefix: str, since: datetime | None, *, page_size: int = 1000
    ) -> Iterator[StoredObject]:
        _check_listing(since, page_size)
        return self._list(_check_prefix(prefix), since, page_size)

    def _list(self, prefix: str, since: datetime | None, page_size: int) -> Iterator[StoredObject]:
        # ListObjectsV2 cannot filter by time, so every page is read and filtered here.
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=prefix, PaginationConfig={"PageSize": page_size}
        )
        try:
            for page in pages:
                for item in page.get("Contents", ()):
                    last_modified = item["LastModified"].astimezone(UTC)
                    if since is not None and last_modified < since:
                        continue
                    yield StoredObject(
                        key=item["Key"],
                        etag=item["ETag"].strip('"'),
                        size=item["Size"],
                        last_modified=last_modified,
                    )
        except (ClientError, BotoCoreError) as e:
            raise self._named(e, f"listing {prefix!r}") from None

    def delete(self, key: str) -> None:
        try:
            self.client.delete_object(Bucket=self.bucket, Key=_check_key(key))
        except (ClientError, BotoCoreError) as e:
            raise self._named(e, f"deleting {key!r}") from None

    def presigned_put_url(self, key: str, *, expires_in: int = 3600, content_type: str | None = None) -> str:
        if not 1 <= expires_in <= MAX_PRESIGN_SECONDS:
            raise ValueError(f"presigned URL for {key!r}: expires_in={expires_in} is outside 1..{MAX_PRESIGN_SECONDS}")
        params = {"Bucket": self.bucket, "Key": _check_key(key)}
        if content_type:
            # Signed into the URL: the uploader must send this exact Content-Type header.
            params["ContentType"] = content_type
        return self.client.generate_presigned_url(
            "put_object", Params=params, ExpiresIn=expires_in, HttpMethod="PUT"
        )


def _check_id(value: str, what: str) -> str:
    if not isinstance(value, str) or not _ID_RE.fullmatch(value):
        raise ValueError(f"{what} {value!r} must be 1-128 characters of letters, digits, '-' or '_'")
    return value


def object_key_for_upload(user_id: str, upload_id: str, ext: str) -> str:
    """Where a user's original photo is stored: uploads/{user_id}/{upload_id}.{ext}."""
    _check_id(user_id, "user id")
    _check_id(upload_id, "upload id")
    normalized = ext.lower().removeprefix(".") if isinstance(ext, str) else ext
    if normalized not in UPLOAD_EXTENSIONS:
        raise ValueError(f"upload extension {ext!r} is not one of {', '.join(UPLOAD_EXTENSIONS)}")
    return f"uploads/{user_id}/{upload_id}.{normalized}"


def parse_upload_key(key: str) -> tuple[str, str, str] | None:
    """(user_id, upload_id, ext) for a key made by object_key_for_upload; None for any other key."""
    match = _UPLOAD_KEY_RE.fullmatch(key) if isinstance(key, str) else None
    return (match[1], match[2], match[3]) if match else None


def derived_key(upload_key: str, kind: str) -> str:
    """Where an image derived from an upload goes; a separate key, because originals are never modified."""
    parsed = parse_upload_key(upload_key)
    if parsed is None:
        raise ValueError(f"{upload_key!r} is not an upload key (uploads/<user_id>/<upload_id>.<ext>)")
    if kind not in DERIVED_KINDS:
        raise ValueError(f"derived image kind {kind!r} is not one of {', '.join(DERIVED_KINDS)}")
    user_id, upload_id, _ = parsed
    return f"derived/{kind}/{user_id}/{upload_id}.jpg"
