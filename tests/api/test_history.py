"""GET /v1/copies/{id}/history, /history/verify and /history/proof over real HTTP."""

from __future__ import annotations

import json

import psycopg
import pytest
from psycopg.rows import dict_row

from covr_core.ledger import chain, checkpoint, proofs
from tests.core.ledger_support import as_attacker, make_copy


@pytest.fixture
def setup(api, member, befriend):
    alice, bob, mallory = member("alice"), member("bob"), member("mallory")
    befriend(alice, bob)
    with psycopg.connect(api.db_url, row_factory=dict_row, autocommit=True) as conn:
        copy_id = make_copy(conn, alice.user_id)
        chain.append(conn, copy_id=copy_id, entry_type="copy_created", to_user_id=alice.user_id,
                     evidence=chain.Evidence("6c1f7f0c-9c1b-4d36-9b1c-3c2c2f1d4e5f", "ab" * 32, 12345))
        for i in range(4):
            chain.append(conn, copy_id=copy_id, entry_type="request_created", from_user_id=bob.user_id,
                         to_user_id=alice.user_id, payload={"i": i})
    return alice, bob, mallory, copy_id


def test_history_pages_show_who_what_when_and_the_photo(api, setup):
    alice, bob, _, copy_id = setup
    page = bob.client.get(f"/v1/copies/{copy_id}/history", params={"limit": 3})
    assert page.status_code == 200, page.text
    body = page.json()
    assert (body["count"], body["next_after"], [e["seq"] for e in body["data"]]) == (5, 3, [1, 2, 3])
    first = body["data"][0]
    assert first["entry_type"] == "copy_created" and first["to_user"] == {"user_id": alice.user_id, "handle": "alice"}
    assert first["evidence"] == {"image_id": "6c1f7f0c-9c1b-4d36-9b1c-3c2c2f1d4e5f", "sha256": "ab" * 32,
                                 "phash": f"{12345:016x}"}
    assert body["data"][1]["from_user"]["handle"] == "bob" and first["at"]
    rest = alice.client.get(f"/v1/copies/{copy_id}/history", params={"after": 3}).json()
    assert [e["seq"] for e in rest["data"]] == [4, 5] and rest["next_after"] is None


def test_a_copy_the_caller_cannot_see_answers_like_a_missing_one(api, setup):
    _, _, mallory, copy_id = setup
    for suffix in ("history", "history/verify", "history/proof"):
        hidden = mallory.client.get(f"/v1/copies/{copy_id}/{suffix}")
        missing = mallory.client.get(f"/v1/copies/6c1f7f0c-9c1b-4d36-9b1c-3c2c2f1d4e5f/{suffix}")
        garbage = mallory.client.get(f"/v1/copies/not-a-uuid/{suffix}")
        assert hidden.status_code == missing.status_code == garbage.status_code == 404
        assert hidden.json()["type"] == missing.json()["type"] == "https://covr.dev/problems/not_found"
        assert hidden.headers["content-type"].startswith("application/problem+json")
    assert api.client().get(f"/v1/copies/{copy_id}/history").status_code == 401


def test_verify_reports_ok_then_names_the_tampered_entry(api, setup):
    _, bob, _, copy_id = setup
    ok = bob.client.get(f"/v1/copies/{copy_id}/history/verify").json()
    assert ok == {"copy_id": copy_id, "ok": True, "entries": 5, "checkpoint_id": None, "problems": []}
    with psycopg.connect(api.db_url, row_factory=dict_row, autocommit=True) as conn:
        as_attacker(conn, "update ledger.entry set payload = '{\"i\": 9}' where copy_id = %s and seq = 4", (copy_id,))
    bad = bob.client.get(f"/v1/copies/{copy_id}/history/verify").json()
    assert bad["ok"] is False
    assert [(p["reason"], p["seq"]) for p in bad["problems"]] == [("content mismatch", 4)]
    assert bad["problems"][0]["message"].startswith(f"copy {copy_id} entry 4: content mismatch")


def test_proof_checks_with_only_the_checkpoint_and_public_key(api, setup):
    _, bob, _, copy_id = setup
    assert bob.client.get(f"/v1/copies/{copy_id}/history/proof").status_code == 404  # no checkpoint yet
    key = checkpoint.load_private_key(checkpoint.generate_private_key_pem())
    with psycopg.connect(api.db_url, row_factory=dict_row, autocommit=True) as conn:
        make_copy(conn, bob.user_id)
        checkpoint.create(conn, key)
    proof = bob.client.get(f"/v1/copies/{copy_id}/history/proof")
    assert proof.status_code == 200, proof.text
    assert proofs.check_proof(json.loads(proof.text), [key.public_key()]) == []


# --- A copy's whole story, through the real API and ingest ------------------------------------------------------

def _ok(r, status=200) -> dict:
    assert r.status_code == status, r.text
    return r.json()


def test_a_real_flow_over_http_leaves_every_step_in_the_history_and_verifies(api, member, befriend, conn, tmp_path,
                                                                             monkeypatch, capsys):
    from covr_core.catalog.books import import_books, read_catalog_file
    from covr_pipelines.cli import main
    from tests.api.test_uploads import BOOK, cover, ingest_what_the_sensor_sees

    path = tmp_path / "catalog.jsonl"
    path.write_text(json.dumps(BOOK) + "\n")
    import_books(conn, list(read_catalog_file(path)))
    conn.commit()
    alice, bob, carol = member("alice"), member("bob"), member("carol")
    befriend(alice, bob)
    befriend(alice, carol)
    befriend(carol, bob)

    # Ingest creates alice's copy from her photo.
    upload = _ok(alice.client.post("/v1/uploads", content=cover(), headers={"Content-Type": "image/jpeg"}), 201)
    ingest_what_the_sensor_sees(api.settings)
    copy_id = _ok(alice.client.get(f"/v1/uploads/{upload['upload_id']}"))["copy_id"]
    [alice_photo] = api.sql("select image_id::text, sha256, phash from media.image where uploader_id = %s",
                            (alice.user_id,))

    def request(who, kind="borrow") -> str:
        return _ok(who.client.post("/v1/requests", json={"copy_id": copy_id, "kind": kind}), 201)["request_id"]

    declined = request(carol)
    _ok(alice.client.post(f"/v1/requests/{declined}/decline"))
    crowded_out = request(carol)
    borrow = request(bob)
    handover = _ok(alice.client.post(f"/v1/requests/{borrow}/accept"))["handover_id"]
    _ok(bob.client.post(f"/v1/handovers/{handover}/complete", json={"condition_rating": 8}))
    back = _ok(bob.client.post(f"/v1/copies/{copy_id}/return"), 201)["handover_id"]
    _ok(alice.client.post(f"/v1/handovers/{back}/complete", json={"condition_rating": 7}))
    keep = request(carol, "keep")
    _ok(alice.client.post(f"/v1/requests/{keep}/accept"))
    # Carol photographs the copy she was promised: ingest suspects the exchange, carol confirms it with a rating.
    _ok(carol.client.post("/v1/uploads", content=cover(size=(220, 330)), headers={"Content-Type": "image/jpeg"}), 201)
    ingest_what_the_sensor_sees(api.settings)
    [suspicion] = _ok(carol.client.get("/v1/suspected-exchanges"))["data"]
    _ok(carol.client.post(f"/v1/suspected-exchanges/{suspicion['suspected_exchange_id']}/confirm",
                          json={"condition_rating": 9}))
    [carol_photo] = api.sql("select image_id::text, sha256, phash from media.image where uploader_id = %s",
                            (carol.user_id,))
    cancelled = _ok(bob.client.post("/v1/requests", json={"copy_id": copy_id}), 201)["request_id"]
    _ok(bob.client.post(f"/v1/requests/{cancelled}/cancel"))
    _ok(carol.client.post(f"/v1/copies/{copy_id}/withdraw"))
    _ok(carol.client.post(f"/v1/copies/{copy_id}/lost"))

    history = _ok(carol.client.get(f"/v1/copies/{copy_id}/history", params={"limit": 200}))
    steps = [(e["entry_type"], (e["from_user"] or {}).get("handle"), (e["to_user"] or {}).get("handle"),
              e["refs"].get("request_id")) for e in history["data"]]
    assert steps == [
        ("copy_created", None, "alice", None),
        ("request_created", "carol", "alice", declined),
        ("request_declined", "alice", "carol", declined),
        ("request_created", "carol", "alice", crowded_out),
        ("request_created", "bob", "alice", borrow),
        ("request_accepted", "alice", "bob", borrow),
        ("request_declined", "alice", "carol", crowded_out),
        ("handover_completed", "alice", "bob", borrow),
        ("handover_completed", "bob", "alice", None),
        ("request_created", "carol", "alice", keep),
        ("request_accepted", "alice", "carol", keep),
        ("exchange_confirmed", "alice", "carol", None),
        ("handover_completed", "alice", "carol", keep),
        ("request_created", "bob", "carol", cancelled),
        ("request_cancelled", "bob", "carol", cancelled),
        ("copy_withdrawn", "carol", None, None),
        ("copy_lost", "carol", None, None),
    ]
    assert [e["seq"] for e in history["data"]] == list(range(1, 18)) and history["count"] == 17
    data = history["data"]

    def photo(image):
        return {"image_id": image["image_id"], "sha256": image["sha256"],
                "phash": f"{image['phash'] & (2**64 - 1):016x}"}

    assert data[0]["evidence"] == photo(alice_photo) and data[0]["payload"]["decision"] == "new_copy"
    assert data[11]["evidence"] == data[12]["evidence"] == photo(carol_photo)
    assert [(e["payload"]["kind"], e["payload"]["condition_rating"]) for e in data if
            e["entry_type"] == "handover_completed"] == [("borrow", 8), ("return", 7), ("keep", 9)]
    assert data[12]["payload"]["owner_id"] == carol.user_id
    assert (data[6]["payload"]["reason"], data[6]["refs"]["accepted_request_id"]) == (
        "another request was accepted", borrow)
    assert [e["payload"]["status_before"] for e in data[15:]] == ["available", "withdrawn"]
    ats = [e["at"] for e in data]
    assert ats == sorted(ats)

    assert _ok(carol.client.get(f"/v1/copies/{copy_id}/history/verify"))["ok"] is True
    monkeypatch.setenv("DATABASE_URL", api.db_url)
    monkeypatch.setenv("COVR_HOME", str(tmp_path / "home"))
    assert main(["ledger", "verify"]) == 0
    assert capsys.readouterr().out.startswith("ledger verified: 17 entries in 1 copies")
    # The copy is lost: alice, no longer its owner, and bob, a contact, see neither it nor its history.
    for who in (alice, bob):
        assert who.client.get(f"/v1/copies/{copy_id}").status_code == 404
        assert who.client.get(f"/v1/copies/{copy_id}/history").status_code == 404


def test_refused_transitions_append_nothing(api, member, befriend, db_state):
    alice, bob = member("alice"), member("bob")
    befriend(alice, bob)
    with psycopg.connect(api.db_url, row_factory=dict_row, autocommit=True) as conn:
        copy_id = make_copy(conn, alice.user_id)
    request_id = _ok(bob.client.post("/v1/requests", json={"copy_id": copy_id}), 201)["request_id"]
    entries = api.sql("select count(*) as n from ledger.entry")[0]["n"]
    before = db_state()
    assert bob.client.post(f"/v1/requests/{request_id}/accept").status_code == 409  # the requester cannot accept
    assert bob.client.post(f"/v1/requests/{request_id}/decline").status_code == 409
    assert bob.client.post("/v1/requests", json={"copy_id": copy_id}).status_code == 409  # already open
    assert alice.client.post(f"/v1/copies/{copy_id}/withdraw").status_code == 409  # an open request
    assert bob.client.post(f"/v1/copies/{copy_id}/withdraw").status_code == 404  # not bob's
    assert bob.client.post(f"/v1/copies/{copy_id}/lost").status_code == 404
    assert db_state() == before
    assert api.sql("select count(*) as n from ledger.entry")[0]["n"] == entries == 1
