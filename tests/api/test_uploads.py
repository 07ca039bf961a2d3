"""Uploads over HTTP: a photo streamed to the local store is ingested by the real sensor and assets; S3 presigns."""

from __future__ import annotations

import itertools
import json

import boto3
import dagster as dg
import httpx

from covr_core.catalog.books import import_books, read_catalog_file
from covr_core.platform.settings import Settings
from covr_pipelines.definitions import ingest_job
from covr_pipelines.defs.dedup.assets import dedup_decisions
from covr_pipelines.defs.identification.assets import book_identifications
from covr_pipelines.defs.ingestion.assets import uploaded_images
from covr_pipelines.defs.ingestion.sensors import build_upload_sensor
from covr_pipelines.defs.vectors.assets import cover_vectors
from covr_pipelines.resources import build_resources
from covr_pipelines.sample_photos import jpeg_bytes, render_cover, valid_isbn13
from tests.api.server import PASSWORD, serve

PROBLEM = "https://covr.dev/problems/"
BOOK = {"isbn13": valid_isbn13(321), "title": "Rivers of Salt", "authors": ["Tomas Ferreira"],
        "published_year": 2003, "language": "en"}
_buckets = itertools.count()


def cover(book=BOOK, size=(200, 300)) -> bytes:
    return jpeg_bytes(render_cover(book["title"], book["authors"][0], book["isbn13"], size=size), quality=95)


def files_under(root) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()) if root.exists() else []


def ingest_what_the_sensor_sees(settings: Settings) -> list[list[str]]:
    """One tick of the real upload sensor, then each run it asks for, materialised in-process."""
    resources = build_resources(settings)
    sensor = build_upload_sensor(ingest_job)
    with dg.build_sensor_context(resources={"object_store": resources["object_store"]}) as context:
        result = sensor(context)
    requests = result if isinstance(result, list) else []
    for request in requests:
        outcome = dg.materialize([uploaded_images, book_identifications, dedup_decisions, cover_vectors],
                                 resources=resources, run_config=request.run_config)
        assert outcome.success
    return [r.run_config["ops"]["uploaded_images"]["config"]["object_keys"] for r in requests]


def test_an_upload_is_picked_up_by_the_sensor_and_its_status_shows_decision_and_book(api, member, conn, tmp_path):
    path = tmp_path / "catalog.jsonl"
    path.write_text(json.dumps(BOOK) + "\n")
    import_books(conn, list(read_catalog_file(path)))
    conn.commit()
    alice = member("alice")

    r = alice.client.post("/v1/uploads", content=cover(), headers={"Content-Type": "image/jpeg"})

    assert r.status_code == 201, r.text
    upload = r.json()
    assert (upload["status"], upload["method"], upload["upload_url"]) == ("pending", "direct", None)
    assert upload["object_key"] == f"uploads/{alice.user_id}/{upload['upload_id']}.jpg"
    assert alice.client.get(f"/v1/uploads/{upload['upload_id']}").json()["status"] == "pending"

    assert ingest_what_the_sensor_sees(api.settings) == [[upload["object_key"]]]

    status = alice.client.get(f"/v1/uploads/{upload['upload_id']}").json()
    assert (status["status"], status["decision"], status["identification_source"]) == ("accepted", "new_copy", "isbn")
    assert (status["book"]["title"], status["book"]["isbn13"]) == (BOOK["title"], BOOK["isbn13"])
    # The copy ingest made is the member's, with the photo's thumbnail.
    copy = alice.client.get(f"/v1/copies/{status['copy_id']}").json()
    assert copy["book"]["title"] == BOOK["title"] and copy["owner"]["user_id"] == alice.user_id
    thumb = alice.client.get(copy["images"][0]["thumbnail_url"])
    assert thumb.status_code == 200 and thumb.content[:3] == b"\xff\xd8\xff"


def test_a_bad_photo_is_rejected_with_its_reason(api, member):
    alice = member("alice")
    photo = cover()
    r = alice.client.post("/v1/uploads", content=photo[: len(photo) // 2],
                          headers={"Content-Type": "application/octet-stream"})
    assert r.status_code == 201, r.text

    ingest_what_the_sensor_sees(api.settings)

    status = alice.client.get(f"/v1/uploads/{r.json()['upload_id']}").json()
    assert status["status"] == "rejected" and "truncated" in status["reason"]
    assert status["decision"] is None and status["book"] is None


def test_another_members_upload_is_404_like_a_missing_one(api, member):
    alice, bob = member("alice"), member("bob")
    upload_id = alice.client.post("/v1/uploads", content=cover(), headers={"Content-Type": "image/jpeg"}).json()[
        "upload_id"]
    missing = "3d4c5b6a-0000-4000-8000-00000000abcd"

    theirs = bob.client.get(f"/v1/uploads/{upload_id}")
    none = bob.client.get(f"/v1/uploads/{missing}")

    assert theirs.status_code == none.status_code == 404
    assert theirs.json()["type"] == none.json()["type"] == PROBLEM + "not_found"
    assert theirs.json()["detail"].replace(upload_id, "ID") == none.json()["detail"].replace(missing, "ID")


def test_refused_uploads_answer_problems_and_leave_nothing(api, member, db_state):
    # The app reads the limit from its Settings on every request, so lowering it here takes effect at once.
    api.settings.max_upload_bytes = 20_000
    alice = member("alice")
    before = db_state()
    big = cover(size=(600, 900)) + b"\0" * 30_000

    def chunks():  # no Content-Length: the limit is enforced while the body streams in
        for i in range(0, len(big), 4096):
            yield big[i : i + 4096]

    declared = alice.client.post("/v1/uploads", content=big, headers={"Content-Type": "image/jpeg"})
    streamed = alice.client.post("/v1/uploads", content=chunks(), headers={"Content-Type": "image/jpeg"})
    text = alice.client.post("/v1/uploads", content=b"not a photo at all", headers={"Content-Type": "image/jpeg"})
    empty = alice.client.post("/v1/uploads", content=b"", headers={"Content-Type": "image/jpeg"})
    as_json = alice.client.post("/v1/uploads", json={"content_type": "image/jpeg"})

    for r, status, code in ((declared, 413, "payload_too_large"), (streamed, 413, "payload_too_large"),
                            (text, 422, "invalid_input"), (empty, 422, "invalid_input"),
                            (as_json, 422, "invalid_input")):
        assert (r.status_code, r.json()["type"]) == (status, PROBLEM + code), r.text
    assert "20000 bytes" in declared.json()["detail"] and "20000 bytes" in streamed.json()["detail"]
    assert files_under(api.settings.objects_dir) == []
    assert db_state() == before


def test_a_replayed_upload_keeps_one_file_and_one_row(api, member, db_state):
    alice = member("alice")
    photo = cover()
    headers = {"Content-Type": "image/jpeg", "Idempotency-Key": "photo-1"}
    first = alice.client.post("/v1/uploads", content=photo, headers=headers)
    state = db_state()

    again = alice.client.post("/v1/uploads", content=photo, headers=headers)
    other = alice.client.post("/v1/uploads", content=cover(size=(210, 300)), headers=headers)

    assert (again.status_code, again.json()) == (201, first.json())
    assert (other.status_code, other.json()["type"]) == (422, PROBLEM + "idempotency_key_reused")
    assert db_state() == state
    assert files_under(api.settings.objects_dir) == [first.json()["object_key"]]


def test_with_s3_the_api_hands_out_a_presigned_put_url(db_url, tmp_path, s3_endpoint):
    bucket = f"covr-api-{next(_buckets)}"
    boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1", aws_access_key_id="testing",
                 aws_secret_access_key="testing").create_bucket(Bucket=bucket)
    settings = Settings(home=tmp_path / "covr", database_url=db_url, s3_bucket=bucket, s3_endpoint_url=s3_endpoint,
                        s3_access_key_id="testing", s3_secret_access_key="testing")
    base_url, stop = serve(settings)
    try:
        token = _signed_in(base_url, "alice")
        with httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {token}"}, timeout=30) as client:
            refused = client.post("/v1/uploads", content=cover(), headers={"Content-Type": "image/jpeg"})
            assert (refused.status_code, refused.json()["type"]) == (422, PROBLEM + "invalid_input")
            bad = client.post("/v1/uploads", json={"content_type": "text/html"})
            assert bad.status_code == 422

            r = client.post("/v1/uploads", json={"content_type": "image/jpeg"})
            assert r.status_code == 201, r.text
            upload = r.json()
            assert upload["method"] == "presigned" and upload["upload_url"].startswith(s3_endpoint)
            put = httpx.put(upload["upload_url"], content=cover(), headers=upload["upload_headers"])
            assert put.status_code == 200, put.text

            keys = ingest_what_the_sensor_sees(settings)

            assert keys == [[upload["object_key"]]]
            status = client.get(f"/v1/uploads/{upload['upload_id']}").json()
            assert status["status"] == "accepted", status
    finally:
        stop()


def _signed_in(base_url: str, handle: str) -> str:
    with httpx.Client(base_url=base_url, timeout=30) as anon:
        r = anon.post("/v1/auth/register", json={"handle": handle, "display_name": handle, "password": PASSWORD})
        assert r.status_code == 201, r.text
        r = anon.post("/v1/auth/login", json={"handle": handle, "password": PASSWORD})
        return r.json()["access_token"]

