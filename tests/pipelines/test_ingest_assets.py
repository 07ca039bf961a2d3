"""The ingest assets under real Dagster execution: photos become identified books, bad files become reasons."""

from __future__ import annotations

from io import BytesIO

import dagster as dg
import pytest
from PIL import Image

from covr_core.media.storage import derived_key
from covr_pipelines.resources import IngestPolicyResource
from covr_pipelines.sample_photos import exif_rotated_jpeg, heic_bytes, photograph, render_cover
from tests.photos import cover_photo, png_header_only
from tests.pipelines.ingest_runs import images_by_key, run_ingest, upload


def test_hostile_files_are_rejected_with_reasons_and_the_batch_goes_on(conn, catalog, resources, store, user):
    alice = user("alice")
    good = cover_photo(catalog[0], seed=1)
    truncated = good[: len(good) // 2]
    files = {
        "good": upload(store, alice, good),
        "truncated": upload(store, alice, truncated),
        "empty": upload(store, alice, b""),
        "text": upload(store, alice, b"just some notes, not a photo\n"),
        "bomb": upload(store, alice, png_header_only(60000, 60000), "png"),
    }
    resources["policy"] = IngestPolicyResource(max_image_bytes=len(good) + 10)
    files["oversized"] = upload(store, alice, good + b"\0" * 64)

    result = run_ingest(resources, list(files.values()))
    rows = images_by_key(conn, list(files.values()))

    assert rows[files["good"]]["status"] == "accepted"
    assert rows[files["good"]]["isbn13"] == catalog[0]["isbn13"]
    expected = {
        "truncated": "truncated",
        "empty": "empty",
        "text": "not an accepted image format",
        "bomb": "declared 60000x60000 pixels exceeds the 50 MP limit",
        "oversized": "over the",
    }
    for name, reason in expected.items():
        row = rows[files[name]]
        assert row["status"] == "rejected", name
        assert reason in row["rejection_reason"], (name, row["rejection_reason"])
    metadata = result.asset_materializations_for_node("uploaded_images")[0].metadata
    assert metadata["accepted"].value == 1 and metadata["rejected"].value == 5
    assert all(c.passed for c in result.get_asset_check_evaluations())


def test_identification_by_barcode_by_title_and_none(conn, catalog, resources, store, user):
    bob = user("bob")
    no_book = photograph(Image.new("RGB", (1000, 1500), (40, 90, 160)), size=(1600, 1200), seed=5)
    buf = BytesIO()
    no_book.save(buf, "JPEG", quality=85)
    keys = {
        "barcode": upload(store, bob, cover_photo(catalog[1], seed=2, size=(2400, 1800))),
        "title": upload(store, bob, cover_photo({**catalog[2], "isbn13": None}, seed=3)),
        "nothing": upload(store, bob, buf.getvalue()),
    }

    run_ingest(resources, list(keys.values()))
    rows = images_by_key(conn, list(keys.values()))

    assert (rows[keys["barcode"]]["identification_source"], rows[keys["barcode"]]["isbn13"]) == (
        "isbn", catalog[1]["isbn13"])
    assert rows[keys["title"]]["identification_source"] == "ocr"
    assert rows[keys["title"]]["isbn13"] == catalog[2]["isbn13"]
    assert rows[keys["nothing"]]["identification_source"] is None
    assert (rows[keys["nothing"]]["decision"], rows[keys["nothing"]]["match_reason"]) == ("ignore", "none")
    evidence = conn.execute(
        "select evidence from ingest.identification where image_id = %s", (rows[keys["barcode"]]["image_id"],)
    ).fetchone()["evidence"]
    assert evidence["barcode"]["codes"] and "ocr" in evidence


def test_exif_rotated_and_heic_photos_are_identified(conn, catalog, resources, store, user):
    carol = user("carol")
    cover = render_cover(catalog[3]["title"], catalog[3]["authors"][0], catalog[3]["isbn13"], seed=4, style=1)
    photo = photograph(cover, size=(1600, 1200), seed=4)
    keys = {
        "exif": upload(store, carol, exif_rotated_jpeg(photo, orientation=6)),
        "heic": upload(store, carol, heic_bytes(photograph(cover, size=(1600, 1200), seed=8)), "heic"),
    }

    run_ingest(resources, list(keys.values()))
    rows = images_by_key(conn, list(keys.values()))

    for name, key in keys.items():
        assert rows[key]["status"] == "accepted", name
        assert rows[key]["isbn13"] == catalog[3]["isbn13"], name
    image = conn.execute("select width, height, format from media.image where object_key = %s",
                         (keys["exif"],)).fetchone()
    assert (image["width"], image["height"]) == (1600, 1200)
    assert conn.execute("select format from media.image where object_key = %s",
                        (keys["heic"],)).fetchone()["format"] == "heif"


def test_rerunning_the_same_objects_changes_nothing(conn, catalog, resources, store, user):
    dave = user("dave")
    keys = [upload(store, dave, cover_photo(catalog[0], seed=6)), upload(store, dave, b"")]
    instance = dg.DagsterInstance.ephemeral()
    run_ingest(resources, keys, instance)

    def counts():
        return conn.execute(
            """
            select (select count(*) from media.image) as images,
                   (select count(*) from ingest.identification) as identifications,
                   (select count(*) from ingest.dedup_result) as decisions,
                   (select count(*) from catalog.copy) as copies,
                   (select count(*) from outbox.event) as events
            """
        ).fetchone()

    before = counts()
    run_ingest(resources, keys, instance)
    assert counts() == before
    assert before["events"] == 3  # ImageUploaded, BookIdentified, DedupResolved of the one good photo


def test_derivatives_are_written_without_exif(conn, catalog, resources, store, user):
    erin = user("erin")
    key = upload(store, erin, cover_photo(catalog[4], seed=7))

    run_ingest(resources, [key])
    image = conn.execute("select thumbnail_key from media.image where object_key = %s", (key,)).fetchone()

    thumb = Image.open(BytesIO(store.get(image["thumbnail_key"])))
    normalized = Image.open(BytesIO(store.get(derived_key(key, "normalized"))))
    assert max(thumb.size) <= 320 and max(normalized.size) <= 2048
    assert not thumb.getexif() and not normalized.getexif()
    assert image["thumbnail_key"].startswith("derived/")


@pytest.mark.slow
def test_a_12_megapixel_photo_is_identified_by_its_barcode(conn, catalog, resources, store, user):
    frank = user("frank")
    key = upload(store, frank, cover_photo(catalog[1], seed=11, size=(4000, 3000), angle=4.0))

    run_ingest(resources, [key])

    row = images_by_key(conn, [key])[key]
    assert (row["identification_source"], row["isbn13"], row["decision"]) == ("isbn", catalog[1]["isbn13"],
                                                                              "new_copy")


def test_a_batch_of_several_chunks_identifies_every_photo_once(conn, catalog, resources, store, user):
    """More photos than two identification chunks: the next chunk is read while the one before is written, and no
    photo is lost, identified twice or given another photo's book."""
    from covr_pipelines.defs.identification.assets import CHUNK

    alice = user("alice")
    books = [catalog[i % len(catalog)] for i in range(2 * CHUNK + 3)]
    keys = [upload(store, alice, cover_photo(book, seed=60 + i, size=(1000, 750))) for i, book in enumerate(books)]

    result = run_ingest(resources, keys)
    rows = images_by_key(conn, keys)

    assert [rows[k]["isbn13"] for k in keys] == [b["isbn13"] for b in books]
    assert all(rows[k]["decision"] in ("new_copy", "existing_copy") for k in keys)
    metadata = result.asset_materializations_for_node("book_identifications")[0].metadata
    assert metadata["identified"].value == len(keys) and metadata["failed"].value == 0
    counts = conn.execute("select count(*) as n, count(distinct image_id) as d from ingest.identification "
                          "where image_id = any(%s)", ([rows[k]["image_id"] for k in keys],)).fetchone()
    assert counts["n"] == counts["d"] == len(keys)
