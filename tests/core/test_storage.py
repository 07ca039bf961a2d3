"""One contract for both object stores: a local folder, and S3 as moto's server speaks it over real HTTP."""

from __future__ import annotations

import hashlib
import itertools
import time
from datetime import UTC, datetime, timedelta

import boto3
import httpx
import pytest
from botocore.exceptions import ClientError

from covr_core.media.storage import (
    LocalObjectStore,
    ObjectNotFound,
    ObjectStore,
    S3ObjectStore,
    StoredObject,
    derived_key,
    object_key_for_upload,
    parse_upload_key,
)

CREDENTIALS = {"access_key_id": "testing", "secret_access_key": "testing"}
_buckets = itertools.count()


def _new_bucket(endpoint: str) -> str:
    name = f"covr-test-{next(_buckets)}"
    boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id=CREDENTIALS["access_key_id"],
        aws_secret_access_key=CREDENTIALS["secret_access_key"],
    ).create_bucket(Bucket=name)
    return name


@pytest.fixture(params=["local", "s3"])
def store(request, tmp_path) -> ObjectStore:
    """A fresh, empty store per test: its own folder, or its own bucket."""
    if request.param == "local":
        return LocalObjectStore(tmp_path / "objects")
    endpoint = request.getfixturevalue("s3_endpoint")
    return S3ObjectStore(bucket=_new_bucket(endpoint), endpoint_url=endpoint, **CREDENTIALS)


def _timestamp_resolution(store: ObjectStore) -> float:
    # S3 (and moto) report last_modified in whole seconds; the local store in microseconds.
    return 1.05 if isinstance(store, S3ObjectStore) else 0.01


def _assert_utc(value: datetime) -> None:
    assert value.tzinfo is not None and value.utcoffset() == timedelta(0), value
    assert abs(datetime.now(UTC) - value) < timedelta(minutes=1), value


# --- contract -------------------------------------------------------------------------------------------


def test_put_then_get_and_head(store):
    data = b"\xff\xd8 a jpeg, more or less"
    put = store.put("uploads/u1/p1.jpg", data, content_type="image/jpeg")

    assert store.get("uploads/u1/p1.jpg") == data
    assert put == store.head("uploads/u1/p1.jpg")
    assert (put.key, put.size) == ("uploads/u1/p1.jpg", len(data))
    assert put.etag and '"' not in put.etag


def test_last_modified_is_tz_aware_utc(store):
    put = store.put("a/b.bin", b"x")
    _assert_utc(put.last_modified)
    _assert_utc(store.head("a/b.bin").last_modified)
    (listed,) = store.list_since("", None)
    _assert_utc(listed.last_modified)


def test_etag_changes_with_content_and_is_stable_otherwise(store):
    first = store.put("k.bin", b"one")
    assert store.head("k.bin").etag == first.etag
    assert [o.etag for o in store.list_since("", None)] == [first.etag]

    second = store.put("k.bin", b"two")
    assert second.etag != first.etag
    assert store.head("k.bin").etag == second.etag
    assert [o.etag for o in store.list_since("", None)] == [second.etag]

    assert store.put("k.bin", b"one").etag == first.etag  # same content, same etag, as on S3


def test_list_since_paginates(store):
    keys = [f"uploads/u1/p{i}.jpg" for i in range(5)]
    for key in keys:
        store.put(key, key.encode())
    calls = []
    if isinstance(store, S3ObjectStore):
        store.client.meta.events.register("before-call.s3.ListObjectsV2", lambda **kw: calls.append(kw))

    listed = list(store.list_since("uploads/", None, page_size=2))

    assert [o.key for o in listed] == keys
    assert all(isinstance(o, StoredObject) and o.size == len(o.key) for o in listed)
    if isinstance(store, S3ObjectStore):
        assert len(calls) == 3  # 2 + 2 + 1, following continuation tokens


def test_list_since_is_a_high_water_mark(store):
    for key in ("old/a", "old/b"):
        store.put(key, b"old")
    # Step past the store's timestamp resolution so new objects cannot share a timestamp with old ones.
    time.sleep(_timestamp_resolution(store))
    new = [store.put(key, b"new") for key in ("new/c", "new/d", "new/e")]
    since = min(o.last_modified for o in new)

    listed = list(store.list_since("", since, page_size=2))

    assert sorted(o.key for o in listed) == ["new/c", "new/d", "new/e"]  # since is inclusive
    assert all(o.last_modified < since for o in (store.head("old/a"), store.head("old/b")))
    assert len(list(store.list_since("", None))) == 5
    assert list(store.list_since("", max(o.last_modified for o in new) + timedelta(seconds=2))) == []


def test_list_since_matches_prefix_on_whole_keys_in_key_order(store):
    for key in ("a0", "a/b", "a-c", "uploads/u10/x.jpg", "uploads/u1/y.jpg", "uploads/u2/z.jpg"):
        store.put(key, b"x")

    assert [o.key for o in store.list_since("a", None)] == ["a-c", "a/b", "a0"]  # S3's byte order
    assert [o.key for o in store.list_since("uploads/u1", None)] == ["uploads/u1/y.jpg", "uploads/u10/x.jpg"]
    assert [o.key for o in store.list_since("uploads/u1/", None)] == ["uploads/u1/y.jpg"]
    assert list(store.list_since("nothing/here/", None)) == []


def test_list_since_rejects_bad_arguments_at_call_time(store):
    with pytest.raises(ValueError, match="naive"):
        store.list_since("", datetime(2024, 1, 1))
    with pytest.raises(ValueError, match="page_size=0"):
        store.list_since("", None, page_size=0)
    with pytest.raises(ValueError, match=r"'\.\./x'"):
        store.list_since("../x", None)


def test_delete(store):
    store.put("uploads/u1/p1.jpg", b"x")
    store.delete("uploads/u1/p1.jpg")

    with pytest.raises(ObjectNotFound):
        store.head("uploads/u1/p1.jpg")
    assert list(store.list_since("", None)) == []
    store.delete("uploads/u1/p1.jpg")  # deleting a missing key is not an error, as on S3


def test_missing_key_names_key_and_store(store):
    for read in (store.get, store.head):
        with pytest.raises(ObjectNotFound) as raised:
            read("uploads/u1/missing.jpg")
        assert isinstance(raised.value, KeyError)
        assert raised.value.key == "uploads/u1/missing.jpg"
        assert str(raised.value) == f"object 'uploads/u1/missing.jpg' not found in {store.describe()}"


def test_a_folder_is_not_an_object(store):
    store.put("uploads/u1/p1.jpg", b"x")
    with pytest.raises(ObjectNotFound):
        store.get("uploads/u1")
    with pytest.raises(ObjectNotFound):
        store.head("uploads")


@pytest.mark.parametrize(
    "key", ["", "/etc/passwd", "../escape", "a/../../b", "a/./b", "a\\b", "a//b", "a/", ".covr-tmp-x", "a\nb"]
)
def test_key_validation(store, key):
    for call in (lambda: store.put(key, b"x"), lambda: store.get(key), lambda: store.head(key),
                 lambda: store.delete(key)):
        with pytest.raises(ValueError) as raised:
            call()
        assert repr(key) in str(raised.value)


# --- local folder ---------------------------------------------------------------------------------------


def test_local_etag_is_the_md5_of_the_content(tmp_path):
    store = LocalObjectStore(tmp_path)
    assert store.put("k", b"hello").etag == hashlib.md5(b"hello").hexdigest()
    # A fresh store (another process, after a restart) computes the same etag without any index.
    assert LocalObjectStore(tmp_path).head("k").etag == hashlib.md5(b"hello").hexdigest()


def test_local_etag_notices_an_in_place_rewrite(tmp_path):
    store = LocalObjectStore(tmp_path)
    store.put("k", b"hello")
    (tmp_path / "k").write_bytes(b"HELLO")  # same size, written behind the store's back
    assert store.head("k").etag == hashlib.md5(b"HELLO").hexdigest()


def test_local_listing_skips_temp_files_and_put_leaves_none(tmp_path):
    store = LocalObjectStore(tmp_path)
    store.put("uploads/u1/p1.jpg", b"x")
    assert [p.name for p in (tmp_path / "uploads" / "u1").iterdir()] == ["p1.jpg"]

    (tmp_path / "uploads" / "u1" / ".covr-tmp-abc123").write_bytes(b"half a write")
    assert [o.key for o in store.list_since("uploads/", None)] == ["uploads/u1/p1.jpg"]


def test_local_has_no_presigned_urls(tmp_path):
    store = LocalObjectStore(tmp_path)
    with pytest.raises(NotImplementedError, match="no presigned URLs"):
        store.presigned_put_url("uploads/u1/p1.jpg")


def test_local_describe(tmp_path):
    assert LocalObjectStore(tmp_path).describe() == f"local folder {tmp_path.resolve()}"


# --- S3 -------------------------------------------------------------------------------------------------


def test_s3_presigned_put_url_accepts_an_upload(s3_endpoint):
    store = S3ObjectStore(bucket=_new_bucket(s3_endpoint), endpoint_url=s3_endpoint, **CREDENTIALS)
    url = store.presigned_put_url("uploads/u1/p1.jpg", expires_in=300, content_type="image/jpeg")
    assert url.startswith(f"{s3_endpoint}/{store.bucket}/uploads/u1/p1.jpg?")

    response = httpx.put(url, content=b"\xff\xd8 uploaded directly", headers={"Content-Type": "image/jpeg"})

    assert response.status_code == 200, response.text
    assert store.get("uploads/u1/p1.jpg") == b"\xff\xd8 uploaded directly"
    assert store.head("uploads/u1/p1.jpg").size == len(b"\xff\xd8 uploaded directly")


def test_s3_presigned_put_url_bounds_expiry(s3_endpoint):
    store = S3ObjectStore(bucket="any", endpoint_url=s3_endpoint, **CREDENTIALS)
    with pytest.raises(ValueError, match="expires_in=0"):
        store.presigned_put_url("k", expires_in=0)


def test_s3_errors_name_bucket_and_endpoint(s3_endpoint):
    store = S3ObjectStore(bucket="no-such-bucket", endpoint_url=s3_endpoint, **CREDENTIALS)
    with pytest.raises(ClientError) as raised:
        store.get("k")
    assert f"getting 'k' in s3://no-such-bucket at {s3_endpoint}" in raised.value.__notes__[0]


def test_s3_describe_and_credentials():
    assert S3ObjectStore(bucket="b", endpoint_url="http://minio:9000", **CREDENTIALS).describe() == (
        "s3://b at http://minio:9000"
    )
    assert S3ObjectStore(bucket="b", region="eu-west-1", **CREDENTIALS).describe() == "s3://b at AWS region eu-west-1"
    with pytest.raises(ValueError, match="both access_key_id and secret_access_key"):
        S3ObjectStore(bucket="b", access_key_id="only-one")


# --- keys -----------------------------------------------------------------------------------------------


def test_upload_keys():
    assert object_key_for_upload("u1", "3f2c", "JPG") == "uploads/u1/3f2c.jpg"
    assert object_key_for_upload("u1", "3f2c", ".heic") == "uploads/u1/3f2c.heic"
    assert parse_upload_key("uploads/u1/3f2c.jpg") == ("u1", "3f2c", "jpg")
    for other in ("derived/thumbnail/u1/3f2c.jpg", "uploads/u1/3f2c.gif", "uploads/u1/x/3f2c.jpg", "uploads/u1/3f2c"):
        assert parse_upload_key(other) is None


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("u1", "3f2c", "gif"), "upload extension 'gif'"),
        (("u/1", "3f2c", "jpg"), "user id 'u/1'"),
        (("u1", "", "jpg"), "upload id ''"),
        (("u1", "..", "jpg"), "upload id '..'"),
    ],
)
def test_upload_key_rejects(args, message):
    with pytest.raises(ValueError, match=message):
        object_key_for_upload(*args)


def test_derived_keys():
    assert derived_key("uploads/u1/3f2c.heic", "normalized") == "derived/normalized/u1/3f2c.jpg"
    assert derived_key("uploads/u1/3f2c.png", "thumbnail") == "derived/thumbnail/u1/3f2c.jpg"
    with pytest.raises(ValueError, match="kind 'preview'"):
        derived_key("uploads/u1/3f2c.png", "preview")
    with pytest.raises(ValueError, match="'derived/thumbnail/u1/3f2c.jpg' is not an upload key"):
        derived_key("derived/thumbnail/u1/3f2c.jpg", "thumbnail")
