"""Uploads against a real local store, moto's S3 over HTTP and real Postgres: streamed, limited, presigned, tracked."""

from __future__ import annotations

import itertools
from urllib.parse import urlsplit

import boto3
import httpx
import pytest

from covr_core.media import uploads
from covr_core.media.storage import LocalObjectStore, parse_upload_key
from covr_core.platform.settings import Settings
from covr_core.shared.errors import InvalidInput, NotFound, PayloadTooLarge

JPEG = b"\xff\xd8\xff\xe0" + b"\x00\x10JFIF" + bytes(range(256)) * 40
_buckets = itertools.count()


@pytest.fixture
def member(conn):
    def make(handle: str) -> str:
        row = conn.execute("insert into contact.user (handle, display_name) values (%s, %s) returning user_id",
                           (handle, handle)).fetchone()
        conn.commit()
        return str(row["user_id"])

    return make


@pytest.fixture
def store(tmp_path):
    return LocalObjectStore(tmp_path / "objects")


def files_under(store: LocalObjectStore) -> list[str]:
    return sorted(p.relative_to(store.root).as_posix() for p in store.root.rglob("*") if p.is_file())


def upload_rows(conn):
    return conn.execute("select upload_id::text, object_key, method, byte_size from media.upload").fetchall()


def receive(conn, store, uploader, chunks, max_bytes=1_000_000, declared=None):
    with uploads.IncomingFile(store, uploader_id=uploader, max_bytes=max_bytes, declared_size=declared) as incoming:
        for chunk in chunks:
            incoming.write(chunk)
        incoming.finish()
        return uploads.receive_file(conn, incoming)


def test_a_streamed_file_lands_under_the_uploaders_prefix_and_is_recorded(conn, store, member):
    alice = member("alice")

    with uploads.IncomingFile(store, uploader_id=alice, max_bytes=1_000_000) as incoming:
        for i in range(0, len(JPEG), 1000):
            incoming.write(JPEG[i : i + 1000])
            # Until it is received, ingest's listing does not see it.
            assert list(store.list_since("uploads/", None)) == []
        incoming.finish()
        receipt = uploads.receive_file(conn, incoming)

    assert parse_upload_key(receipt["object_key"]) == (alice, receipt["upload_id"], "jpg")
    assert store.get(receipt["object_key"]) == JPEG
    assert [o.key for o in store.list_since("uploads/", None)] == [receipt["object_key"]]
    assert files_under(store) == [receipt["object_key"]]
    assert (receipt["status"], receipt["method"], receipt["byte_size"]) == ("pending", "direct", len(JPEG))
    assert upload_rows(conn) == [{"upload_id": receipt["upload_id"], "object_key": receipt["object_key"],
                                  "method": "direct", "byte_size": len(JPEG)}]


@pytest.mark.parametrize("case", ["streamed_over", "declared_over", "not_an_image", "empty"])
def test_a_refused_upload_leaves_nothing_behind(conn, store, member, case):
    alice = member("alice")
    chunks, declared, error = {
        "streamed_over": ([JPEG[:4000], JPEG[4000:8000]], None, PayloadTooLarge),
        "declared_over": ([JPEG], 2_000_000, PayloadTooLarge),
        "not_an_image": ([b"just some notes\n" * 10], None, InvalidInput),
        "empty": ([], None, InvalidInput),
    }[case]

    with pytest.raises(error) as raised:
        receive(conn, store, alice, chunks, max_bytes=5000, declared=declared)

    assert files_under(store) == [] and upload_rows(conn) == []
    if error is PayloadTooLarge:
        assert "5000 bytes" in str(raised.value)


def test_status_follows_ingest_and_is_private_to_the_uploader(conn, store, member):
    alice, bob = member("alice"), member("bob")
    pending = receive(conn, store, alice, [JPEG])
    rejected = receive(conn, store, alice, [JPEG + b"x"])
    failed = receive(conn, store, alice, [JPEG + b"y"])
    book = conn.execute("insert into catalog.book (title, isbn13) values ('Rivers of Salt', '9780306406157') "
                        "returning book_id").fetchone()["book_id"]
    accepted = receive(conn, store, alice, [JPEG + b"z"])
    image = conn.execute(
        """
        insert into media.image (object_key, uploader_id, status, sha256, phash, byte_size, format)
        values (%s, %s, 'accepted', repeat('c', 64), 3, 10, 'jpeg') returning image_id
        """,
        (accepted["object_key"], alice),
    ).fetchone()["image_id"]
    conn.execute("insert into media.image (object_key, uploader_id, status, rejection_reason, byte_size) "
                 "values (%s, %s, 'rejected', 'the JPEG is truncated', 10)", (rejected["object_key"], alice))
    conn.execute("insert into ingest.failure (object_key, uploader_id, stage, reason) values (%s, %s, 'upload', "
                 "'the object store timed out')", (failed["object_key"], alice))
    conn.commit()

    def status(upload):
        return uploads.upload_status(conn, uploader_id=alice, upload_id=upload["upload_id"])

    assert status(pending)["status"] == "pending" and status(pending)["decision"] is None
    assert (status(rejected)["status"], status(rejected)["reason"]) == ("rejected", "the JPEG is truncated")
    assert (status(failed)["status"], status(failed)["reason"]) == ("failed", "upload: the object store timed out")
    assert status(accepted)["status"] == "pending"  # accepted by the upload stage, not yet decided
    conn.execute("insert into ingest.identification (image_id, book_id, isbn13, confidence, source) "
                 "values (%s, %s, '9780306406157', 0.99, 'isbn')", (image, book))
    conn.execute("insert into ingest.dedup_result (image_id, decision, match_reason, book_id) "
                 "values (%s, 'new_copy', 'none', %s)", (image, book))
    conn.commit()
    done = status(accepted)
    assert (done["status"], done["decision"], done["match_reason"], done["identification_source"]) == (
        "accepted", "new_copy", "none", "isbn")
    assert (done["book"]["title"], done["book"]["isbn13"]) == ("Rivers of Salt", "9780306406157")

    for other, upload_id in ((bob, pending["upload_id"]), (alice, "2b0c8f0e-0000-4000-8000-000000000000"),
                             (alice, "not-a-uuid")):
        with pytest.raises(NotFound) as err:
            uploads.upload_status(conn, uploader_id=other, upload_id=upload_id)
        assert str(err.value) == f"upload {upload_id} not found"


def s3_settings(tmp_path, endpoint: str, **kw) -> Settings:
    bucket = f"covr-uploads-{next(_buckets)}"
    boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="testing",
                 aws_secret_access_key="testing").create_bucket(Bucket=bucket)
    return Settings(home=tmp_path, s3_bucket=bucket, s3_endpoint_url=endpoint, s3_access_key_id="testing",
                    s3_secret_access_key="testing", **kw)


def test_a_presigned_put_url_uploads_under_the_key_ingest_lists(conn, member, tmp_path, s3_endpoint):
    alice = member("alice")
    settings = s3_settings(tmp_path, s3_endpoint)
    store, signer = uploads.object_store(settings), uploads.signing_store(settings)

    upload = uploads.presign_upload(conn, signer, uploader_id=alice, content_type="image/jpeg")

    assert parse_upload_key(upload["object_key"]) == (alice, upload["upload_id"], "jpg")
    assert upload["upload_headers"] == {"Content-Type": "image/jpeg"} and upload["expires_at"] is not None
    put = httpx.put(upload["upload_url"], content=JPEG, headers=upload["upload_headers"])
    assert put.status_code == 200, put.text
    assert [o.key for o in store.list_since("uploads/", None)] == [upload["object_key"]]
    assert store.get(upload["object_key"]) == JPEG
    assert uploads.upload_status(conn, uploader_id=alice, upload_id=upload["upload_id"])["status"] == "pending"
    with pytest.raises(InvalidInput):
        uploads.presign_upload(conn, signer, uploader_id=alice, content_type="text/html")


def test_presigned_urls_use_the_public_endpoint_when_set(conn, member, tmp_path, s3_endpoint):
    alice = member("alice")
    settings = s3_settings(tmp_path, s3_endpoint, s3_public_endpoint_url="https://photos.example.org")
    signer = uploads.signing_store(settings)

    upload = uploads.presign_upload(conn, signer, uploader_id=alice, content_type="image/png")
    thumb = uploads.presigned_get_url(signer, "derived/thumbnail/x/y.jpg")

    for url in (upload["upload_url"], thumb):
        assert urlsplit(url).netloc == "photos.example.org", url
    assert upload["object_key"].endswith(".png")
    assert uploads.signing_store(Settings(home=tmp_path)) is None
