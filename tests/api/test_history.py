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
