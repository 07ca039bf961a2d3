"""`covr ledger keygen|checkpoint|verify|check-proof` on real PostgreSQL: exit 0 when all verifies, 1 naming
the first bad copy and entry."""

from __future__ import annotations

import json

import psycopg
import pytest
from psycopg.rows import dict_row

from covr_core.ledger import chain
from tests.core.ledger_support import as_attacker, make_copy, make_user


@pytest.fixture
def history(db_url):
    with psycopg.connect(db_url, row_factory=dict_row, autocommit=True) as conn:
        alice = make_user(conn, "alice")
        copies = sorted(make_copy(conn, alice) for _ in range(3))
        for c in copies:
            for kind in ("copy_created", "request_created", "request_declined"):
                chain.append(conn, copy_id=c, entry_type=kind, to_user_id=alice)
        yield conn, copies


def test_keygen_checkpoint_verify_and_a_proof_that_checks(covr, history, tmp_path, db_url):
    conn, copies = history
    code, out, _ = covr("ledger", "keygen")
    assert code == 0 and "public key: " in out
    public = out.split("public key: ")[1].split()[0]
    assert (tmp_path / "home" / "ledger" / "signing-key.pem").stat().st_mode & 0o077 == 0
    code, _, err = covr("ledger", "keygen")
    assert code == 2 and "rotation" in err

    code, out, _ = covr("ledger", "checkpoint")
    assert code == 0 and "checkpoint 1: 3 copies" in out
    assert (tmp_path / "home" / "objects" / "ledger" / "checkpoints" / "000000000001.json").exists()

    code, out, _ = covr("ledger", "verify")
    assert code == 0 and out.startswith("ledger verified: 9 entries in 3 copies, checkpoint 1")
    code, out, _ = covr("ledger", "verify", "--copy", copies[1], "--json")
    assert code == 0 and json.loads(out) | {"seconds": 0} == {
        "ok": True, "copies": 1, "entries": 3, "checkpoint_id": 1, "seconds": 0, "problems": []}

    from covr_core.ledger import proofs

    proof_file = tmp_path / "proof.json"
    proof_file.write_text(json.dumps(proofs.inclusion_proof(conn, copies[2])))
    code, out, _ = covr("ledger", "check-proof", str(proof_file), "--public-key", public)
    assert code == 0 and f"copy {copies[2]} entry 3 is in checkpoint 1" in out
    code, out, _ = covr("ledger", "check-proof", str(proof_file))  # the configured key
    assert code == 0
    other = "11" * 32
    code, _, err = covr("ledger", "check-proof", str(proof_file), "--public-key", other)
    assert code in (1, 2) and ("bad signature" in err or "covr:" in err)


def test_verify_exits_1_naming_the_first_bad_copy_and_entry(covr, history):
    conn, copies = history
    as_attacker(conn, "update ledger.entry set payload = '{\"x\": 1}' where copy_id = %s and seq = 2", (copies[1],))
    as_attacker(conn, "delete from ledger.entry where copy_id = %s and seq = 2", (copies[2],))
    code, _, err = covr("ledger", "verify")
    assert code == 1
    assert err.splitlines()[0] == (f"covr: ledger verification failed: copy {copies[1]} entry 2: content mismatch: "
                                   "its stored columns (payload, refs, ts, type, users) differ from the hashed bytes")
    assert f"copy {copies[2]} entry 2: missing entry" in err
    code, out, _ = covr("ledger", "verify", "--json")
    report = json.loads(out)
    assert code == 1 and [(p["copy_id"], p["seq"], p["reason"]) for p in report["problems"]] == [
        (copies[1], 2, "content mismatch"), (copies[2], 2, "missing entry")]


def test_an_altered_exported_checkpoint_fails_verification(covr, history, tmp_path):
    covr("ledger", "keygen")
    covr("ledger", "checkpoint")
    path = tmp_path / "home" / "objects" / "ledger" / "checkpoints" / "000000000001.json"
    doc = json.loads(path.read_text())
    doc["signature"] = "00" * 64
    path.write_text(json.dumps(doc))
    code, _, err = covr("ledger", "verify")
    assert code == 1 and "checkpoint mismatch: checkpoint 1 in the database differs" in err


def test_checkpoint_without_a_key_says_how_to_make_one(covr, history):
    code, _, err = covr("ledger", "checkpoint")
    assert code == 2 and "covr ledger keygen" in err
