"""`covr ingest --json` end to end: one line per file, and one scenario for each rule of the dedup table."""

from __future__ import annotations

import json
from io import BytesIO

import pytest
from PIL import Image

from covr_core.dedup.rules import Thresholds
from covr_core.media.imaging import hamming
from covr_pipelines.cli import JSON_KEYS, main
from covr_pipelines.sample_photos import jpeg_bytes, photograph, render_cover, valid_isbn13

EDITION_1 = {"isbn13": valid_isbn13(201), "title": "Rivers of Salt", "authors": ["Tomas Ferreira"]}
EDITION_2 = {"isbn13": valid_isbn13(202), "title": "Rivers of Salt", "authors": ["Tomas Ferreira"]}
ORCHARD = {"isbn13": valid_isbn13(203), "title": "The Quiet Orchard", "authors": ["Maria Lindqvist"]}
UNKNOWN = {"isbn13": valid_isbn13(204), "title": "Lanterns Over Harbour", "authors": ["Nadia Haddad"]}
BIG = (2400, 1800)
PHASH_COPY_DISTANCE = Thresholds().phash_copy_distance


@pytest.fixture
def covr(db_url, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DATABASE_URL", db_url)
    monkeypatch.setenv("COVR_HOME", str(tmp_path / "home"))
    catalog = tmp_path / "catalog.jsonl"
    catalog.write_text("".join(json.dumps(b) + "\n" for b in (EDITION_1, EDITION_2, ORCHARD)))
    assert main(["catalog", "import", str(catalog)]) == 0
    capsys.readouterr()

    def ingest(user: str, *paths) -> list[dict]:
        assert main(["ingest", "--as", user, *map(str, paths), "--json"]) == 0
        return [json.loads(line) for line in capsys.readouterr().out.splitlines()]

    return ingest


def _photo(tmp_path, name, book, *, seed, background=(150, 110, 75), angle=3.0, style=None) -> str:
    cover = render_cover(book["title"], book["authors"][0], book["isbn13"], seed=seed,
                         style=seed if style is None else style)
    path = tmp_path / f"{name}.jpg"
    path.write_bytes(jpeg_bytes(photograph(cover, size=BIG, seed=seed, background=background, angle=angle)))
    return path


def _reencoded(source, target):
    """source as a messaging app forwards it: downscaled to 1200x900 and re-encoded at quality 70."""
    with Image.open(source) as original:
        small = original.resize((1200, 900))
    buf = BytesIO()
    small.save(buf, "JPEG", quality=70)
    target.write_bytes(buf.getvalue())
    return target


def test_json_lines_have_exactly_the_contract_keys_in_input_order(covr, tmp_path):
    good = _photo(tmp_path, "good", ORCHARD, seed=1)
    text = tmp_path / "notes.jpg"
    text.write_text("not a photo")

    lines = covr("alice", text, good)

    assert [tuple(line) for line in lines] == [JSON_KEYS, JSON_KEYS]
    assert [line["file"] for line in lines] == [str(text), str(good)]
    assert lines[0]["status"] == "rejected" and "not an accepted image format" in lines[0]["reason"]
    assert lines[1]["status"] == "accepted" and lines[1]["reason"] is None
    assert (lines[1]["isbn13"], lines[1]["title"], lines[1]["source"]) == (ORCHARD["isbn13"], ORCHARD["title"], "isbn")
    assert isinstance(lines[1]["phash"], int) and len(lines[1]["sha256"]) == 64


def test_each_dedup_rule_from_real_photos(covr, tmp_path, conn):
    # Rule 6: a known book, and alice holds no copy yet.
    first = covr("alice", _photo(tmp_path, "alice1", ORCHARD, seed=1))[0]
    assert (first["decision"], first["match_reason"], first["source"]) == ("new_copy", "none", "isbn")
    alices_copy = first["copy_id"]
    assert alices_copy and first["book_id"]

    # Rule 1: the same bytes again.
    again = covr("alice", tmp_path / "alice1.jpg")[0]
    assert (again["decision"], again["match_reason"]) == ("ignore", "exact_hash")

    # Rule 4: a new photo of alice's own copy, framed differently: its pHash is far from the first photo's, so
    # only the barcode ties it to her copy.
    retake = covr("alice", _photo(tmp_path, "alice2", ORCHARD, seed=2, background=(90, 90, 100), angle=-4))[0]
    assert (retake["decision"], retake["match_reason"], retake["source"], retake["copy_id"]) == (
        "existing_copy", "none", "isbn", alices_copy)
    assert hamming(retake["phash"], first["phash"]) > PHASH_COPY_DISTANCE

    # Rule 2: alice's first photo again, downscaled and re-encoded: the same photo of her own copy.
    reencoded = covr("alice", _reencoded(tmp_path / "alice1.jpg", tmp_path / "alice1-small.jpg"))[0]
    assert (reencoded["decision"], reencoded["match_reason"], reencoded["copy_id"]) == (
        "existing_copy", "phash_match", alices_copy)
    assert hamming(reencoded["phash"], first["phash"]) <= PHASH_COPY_DISTANCE

    # Rule 6 for another member's own copy of the same edition.
    bobs = covr("bob", _photo(tmp_path, "bob1", ORCHARD, seed=3, background=(60, 120, 70), angle=6))[0]
    assert bobs["decision"] == "new_copy" and bobs["copy_id"] != alices_copy
    assert bobs["book_id"] == first["book_id"]

    # Rule 3: bob's photo, forwarded to carol: downscaled and re-encoded.
    suspect = covr("carol", _reencoded(tmp_path / "bob1.jpg", tmp_path / "forwarded.jpg"))[0]
    assert (suspect["decision"], suspect["match_reason"], suspect["copy_id"]) == (
        "exchange_suspected", "phash_match", bobs["copy_id"])
    pending = conn.execute("select status, holder_id::text from exchange.suspected_exchange").fetchall()
    assert [p["status"] for p in pending] == ["pending"]

    # Two editions of one title, told apart by their barcodes.
    e1, e2 = covr("dave", _photo(tmp_path, "ed1", EDITION_1, seed=4, background=(170, 160, 140)),
                  _photo(tmp_path, "ed2", EDITION_2, seed=5, background=(40, 40, 60), angle=-2))
    assert (e1["isbn13"], e2["isbn13"]) == (EDITION_1["isbn13"], EDITION_2["isbn13"])
    assert e1["book_id"] != e2["book_id"] and e1["decision"] == e2["decision"] == "new_copy"

    # Rule 5: erin's request for alice's copy was accepted; erin's photo of that book suggests the hand-over.
    erin = conn.execute("insert into contact.user (handle, display_name) values ('erin', 'Erin') "
                        "returning user_id").fetchone()["user_id"]
    alice = conn.execute("select user_id from contact.user where handle = 'alice'").fetchone()["user_id"]
    request = conn.execute("insert into exchange.request (copy_id, requester_id, holder_id) values (%s, %s, %s) "
                           "returning request_id", (alices_copy, erin, alice)).fetchone()["request_id"]
    conn.execute("update exchange.request set status = 'accepted' where request_id = %s", (request,))
    conn.commit()
    handed = covr("erin", _photo(tmp_path, "erin1", ORCHARD, seed=6, background=(200, 200, 205), angle=-5))[0]
    assert (handed["decision"], handed["copy_id"]) == ("exchange_suspected", alices_copy)
    [announced] = conn.execute("select payload from outbox.event where type = 'ExchangeSuspected' "
                               "and payload->>'image_id' = %s", (handed["image_id"],)).fetchall()
    assert (announced["payload"]["holder_id"], announced["payload"]["copy_id"]) == (str(alice), alices_copy)

    # Rule 7: a valid ISBN the catalog does not know: a new book with provisional metadata.
    new = covr("frank", _photo(tmp_path, "unknown", UNKNOWN, seed=7))[0]
    assert (new["decision"], new["isbn13"], new["source"]) == ("new_book", UNKNOWN["isbn13"], "isbn")
    book = conn.execute("select metadata_source, needs_review, title from catalog.book where isbn13 = %s",
                        (UNKNOWN["isbn13"],)).fetchone()
    assert (book["metadata_source"], book["needs_review"], book["title"]) == ("ocr", True, UNKNOWN["title"])
    assert new["title"] == UNKNOWN["title"]

    # Rule 8: no book at all.
    empty = tmp_path / "wall.jpg"
    empty.write_bytes(jpeg_bytes(photograph(Image.new("RGB", (1000, 1500), (40, 90, 160)), size=BIG, seed=9)))
    nothing = covr("frank", empty)[0]
    assert (nothing["decision"], nothing["match_reason"], nothing["book_id"]) == ("ignore", "none", None)

    events = {r["type"]: r["n"] for r in conn.execute(
        "select type, count(*) as n from outbox.event group by type").fetchall()}
    accepted = conn.execute("select count(*) as n from media.image where status = 'accepted'").fetchone()["n"]
    assert events["ImageUploaded"] == events["DedupResolved"] == accepted


def test_an_unknown_isbn_takes_its_metadata_from_open_library(covr, tmp_path, conn, monkeypatch):
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    from urllib.parse import unquote

    book = {"isbn13": valid_isbn13(205), "title": "The Cartographer's Daughter", "authors": ["Ines Moreau"]}
    requests = []

    class OpenLibrary(BaseHTTPRequestHandler):
        def do_GET(self):
            requests.append(self.path)
            body = {f"ISBN:{book['isbn13']}": {"title": book["title"], "authors": [{"name": "Ines Moreau"}],
                                               "publish_date": "March 2011", "subjects": [{"name": "Maps"}]}}
            payload = json.dumps(body).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), OpenLibrary)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("COVR_OPENLIBRARY_URL", f"http://127.0.0.1:{server.server_port}")
    try:
        line = covr("ines", _photo(tmp_path, "cartographer", book, seed=8))[0]
    finally:
        server.shutdown()

    assert (line["decision"], line["isbn13"], line["title"]) == ("new_book", book["isbn13"], book["title"])
    stored = conn.execute("select metadata_source, needs_review, authors, published_year from catalog.book "
                          "where isbn13 = %s", (book["isbn13"],)).fetchone()
    assert (stored["metadata_source"], stored["needs_review"]) == ("openlibrary", False)
    assert stored["authors"] == ["Ines Moreau"] and stored["published_year"] == 2011
    assert len(requests) == 1 and f"ISBN:{book['isbn13']}" in unquote(requests[0])


def test_retry_ingests_a_failed_upload_once_and_names_unknown_ids(covr, tmp_path, conn, capsys):
    import uuid

    from covr_core.dedup.failures import record_failure
    from covr_core.media.storage import LocalObjectStore

    covr("alice", _photo(tmp_path, "first", ORCHARD, seed=2))
    alice = str(conn.execute("select user_id from contact.user where handle = 'alice'").fetchone()["user_id"])
    key = f"uploads/{alice}/{uuid.uuid4()}.jpg"
    # What a run records when the store was down while it read this object.
    record_failure(conn, object_key=key, stage="upload", reason="upload failed: OSError: store unreachable",
                   run_id="earlier-run", uploader_id=alice)
    conn.commit()
    LocalObjectStore(tmp_path / "home" / "objects").put(key, _photo(tmp_path, "again", EDITION_1, seed=3).read_bytes())

    assert main(["ingest", "--retry", key, "--json"]) == 0
    [line] = [json.loads(x) for x in capsys.readouterr().out.splitlines()]

    assert (line["file"], line["status"], line["decision"]) == (key, "accepted", "new_copy")
    assert conn.execute("select count(*) as n from ingest.failure where resolved_at is null").fetchone()["n"] == 0
    assert main(["ingest", "--retry-failed"]) == 0
    assert "no failed images to retry" in capsys.readouterr().out
    assert main(["ingest", "--retry", str(uuid.uuid4())]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("covr: no failed image named")
