"""Every tamper is detected, and the error names the copy and the entry.

The attacker here has table access: `as_attacker` sets `session_replication_role = replica` (a superuser's or
the owner's right), which silences the append-only triggers, and one test disables them with
`alter table ... disable trigger` as the table owner. The database then lets the edit through; verification
and the signed checkpoints must still catch it.
"""

from __future__ import annotations

import copy as copylib
import json

import pytest

from covr_core.ledger import canonical, chain, checkpoint, proofs, verify
from tests.core.ledger_support import as_attacker, make_copy


@pytest.fixture
def ledger(aconn, people, copy_id, key):
    """Two copies: the victim with 5 entries and a bystander with 2, both checkpointed."""
    other = make_copy(aconn, people["bob"])
    kinds = ["copy_created", "request_created", "request_accepted", "handover_completed", "request_created"]
    for i, kind in enumerate(kinds):
        chain.append(aconn, copy_id=copy_id, entry_type=kind, from_user_id=people["alice"],
                     to_user_id=people["bob"], payload={"n": i, "note": f"step {i}"})
    chain.append(aconn, copy_id=other, entry_type="copy_created")
    chain.append(aconn, copy_id=other, entry_type="copy_lost")
    trusted = {checkpoint.key_id(key): key.public_key()}
    assert verify.verify(aconn, trusted_keys=trusted).ok
    return {"copy": copy_id, "other": other, "keys": trusted}


def first(aconn, ledger, **kwargs) -> verify.Problem:
    report = verify.verify(aconn, trusted_keys=ledger["keys"], **kwargs)
    assert not report.ok
    return report.first


def entry(aconn, copy_id, seq) -> dict:
    return aconn.execute("select * from ledger.entry where copy_id = %s and seq = %s", (copy_id, seq)).fetchone()


def rehash(aconn, copy_id, seq, *, payload=None, ts_us=None, prev_hash=None) -> tuple[bytes, bytes]:
    """The bytes and hash an attacker would compute for entry `seq` with new contents."""
    row = entry(aconn, copy_id, seq)
    body = json.loads(bytes(row["canonical"]))
    if payload is not None:
        body["payload"] = payload
    if ts_us is not None:
        body["ts_us"] = ts_us
    if prev_hash is not None:
        body["prev_hash"] = prev_hash.hex()
    data = canonical.canonical_bytes(body)
    return data, canonical.entry_hash(data)


def test_payload_edited_in_jsonb_only(aconn, ledger):
    as_attacker(aconn, "update ledger.entry set payload = '{\"n\": 2, \"note\": \"forged\"}' "
                       "where copy_id = %s and seq = 3", (ledger["copy"],))
    problem = first(aconn, ledger)
    assert (problem.reason, problem.copy_id, problem.seq) == (verify.CONTENT_MISMATCH, ledger["copy"], 3)
    assert f"copy {ledger['copy']} entry 3: content mismatch" in str(problem)


def test_payload_edited_in_canonical_bytes_only(aconn, ledger):
    data, _ = rehash(aconn, ledger["copy"], 3, payload={"n": 2, "note": "forged"})
    as_attacker(aconn, "update ledger.entry set canonical = %s where copy_id = %s and seq = 3", (data, ledger["copy"]))
    problem = first(aconn, ledger)
    assert (problem.reason, problem.copy_id, problem.seq) == (verify.HASH_MISMATCH, ledger["copy"], 3)


def test_payload_edited_in_both_jsonb_and_canonical_bytes(aconn, ledger):
    data, _ = rehash(aconn, ledger["copy"], 3, payload={"n": 2, "note": "forged"})
    as_attacker(aconn, "update ledger.entry set canonical = %s, payload = '{\"n\": 2, \"note\": \"forged\"}' "
                       "where copy_id = %s and seq = 3", (data, ledger["copy"]))
    problem = first(aconn, ledger)
    assert (problem.reason, problem.copy_id, problem.seq) == (verify.HASH_MISMATCH, ledger["copy"], 3)


def test_canonical_bytes_that_are_not_json_any_more(aconn, ledger):
    # Postgres cannot parse these: verification falls back to checking every row in Python.
    as_attacker(aconn, "update ledger.entry set canonical = '\\xff00ff' where copy_id = %s and seq = 2",
                (ledger["copy"],))
    problem = first(aconn, ledger)
    assert (problem.reason, problem.copy_id, problem.seq) == (verify.HASH_MISMATCH, ledger["copy"], 2)


def test_slow_path_sees_a_jsonb_edit_too(aconn, ledger):
    as_attacker(aconn, "update ledger.entry set canonical = '\\xff00' where copy_id = %s and seq = 1",
                (ledger["other"],))
    as_attacker(aconn, "update ledger.entry set payload = '{\"n\": 4, \"note\": \"tab\\there \\\\ é\"}' "
                       "where copy_id = %s and seq = 5", (ledger["copy"],))
    report = verify.verify(aconn, trusted_keys=ledger["keys"])
    found = {(p.reason, p.copy_id, p.seq) for p in report.problems}
    assert found == {(verify.CONTENT_MISMATCH, ledger["copy"], 5), (verify.HASH_MISMATCH, ledger["other"], 1)}


def test_timestamp_edited(aconn, ledger):
    as_attacker(aconn, "update ledger.entry set ts = ts - interval '1 microsecond' where copy_id = %s and seq = 4",
                (ledger["copy"],))
    problem = first(aconn, ledger)
    assert (problem.reason, problem.copy_id, problem.seq) == (verify.CONTENT_MISMATCH, ledger["copy"], 4)


def test_middle_entry_deleted_with_the_trigger_disabled_by_the_owner(aconn, ledger):
    # The other way in: the table owner disables the append-only trigger outright.
    with aconn.transaction():
        aconn.execute("alter table ledger.entry disable trigger entry_append_only")
        aconn.execute("delete from ledger.entry where copy_id = %s and seq = 3", (ledger["copy"],))
        aconn.execute("alter table ledger.entry enable trigger entry_append_only")
    problem = first(aconn, ledger)
    assert (problem.reason, problem.copy_id, problem.seq) == (verify.MISSING_ENTRY, ledger["copy"], 3)


def test_tail_truncated(aconn, ledger):
    as_attacker(aconn, "delete from ledger.entry where copy_id = %s and seq >= 4", (ledger["copy"],))
    problem = first(aconn, ledger)
    assert (problem.reason, problem.copy_id, problem.seq) == (verify.MISSING_ENTRY, ledger["copy"], 4)


def test_head_columns_edited_to_match_a_truncated_chain(aconn, ledger, key):
    checkpoint.create(aconn, key)
    third = entry(aconn, ledger["copy"], 3)
    as_attacker(aconn, "delete from ledger.entry where copy_id = %s and seq >= 4", (ledger["copy"],))
    as_attacker(aconn, "update ledger.chain set head_seq = 3, head_hash = %s where copy_id = %s",
                (third["entry_hash"], ledger["copy"]))
    problem = first(aconn, ledger)
    assert (problem.reason, problem.copy_id, problem.seq) == (verify.CHECKPOINT_MISMATCH, ledger["copy"], 4)
    # And the next checkpoint refuses to sign over the shortened chain.
    with pytest.raises(checkpoint.ChainRegressed, match=ledger["copy"]):
        checkpoint.create(aconn, key)


def test_middle_row_rewritten_with_every_successor_recomputed_is_caught_by_the_checkpoint(aconn, ledger, key):
    checkpoint.create(aconn, key)
    copy_id = ledger["copy"]
    prev = None
    for seq in range(2, 6):
        data, digest = rehash(aconn, copy_id, seq, payload={"n": seq, "note": "rewritten"} if seq == 2 else None,
                              prev_hash=prev)
        body = json.loads(data)
        as_attacker(aconn, "update ledger.entry set canonical = %s, entry_hash = %s, prev_hash = %s, payload = %s "
                           "where copy_id = %s and seq = %s",
                    (data, digest, bytes.fromhex(body["prev_hash"]), json.dumps(body["payload"]), copy_id, seq))
        prev = digest
    as_attacker(aconn, "update ledger.chain set head_hash = %s where copy_id = %s", (prev, copy_id))
    # Every chain check passes: only the signed checkpoint knows the old head.
    problem = first(aconn, ledger)
    assert (problem.reason, problem.copy_id, problem.seq) == (verify.CHECKPOINT_MISMATCH, copy_id, 5)
    assert "checkpoint 1 signed" in problem.detail


def test_entry_inserted_past_a_gap(aconn, ledger):
    copy_id = ledger["copy"]
    fifth = entry(aconn, copy_id, 5)
    body = json.loads(bytes(fifth["canonical"]))
    body.update(seq=7, prev_hash=bytes(fifth["entry_hash"]).hex())
    data = canonical.canonical_bytes(body)
    as_attacker(aconn, "insert into ledger.entry (copy_id, seq, prev_hash, entry_hash, ts, entry_type, "
                       "from_user_id, to_user_id, refs, payload, canonical) "
                       "select copy_id, 7, entry_hash, %s, ts, entry_type, from_user_id, to_user_id, refs, payload, %s "
                       "from ledger.entry where copy_id = %s and seq = 5",
                (canonical.entry_hash(data), data, copy_id))
    as_attacker(aconn, "update ledger.chain set head_seq = 7, head_hash = %s where copy_id = %s",
                (canonical.entry_hash(data), copy_id))
    problem = first(aconn, ledger)
    assert (problem.reason, problem.copy_id, problem.seq) == (verify.MISSING_ENTRY, copy_id, 6)


def test_entry_inserted_out_of_order_as_a_second_child(aconn, ledger):
    # A new entry 6 hung on entry 3 instead of entry 5: the owner first drops the fork-refusing constraint.
    copy_id = ledger["copy"]
    third = entry(aconn, copy_id, 3)
    data, digest = rehash(aconn, copy_id, 5, prev_hash=bytes(third["entry_hash"]))
    body = json.loads(data)
    body["seq"] = 6
    data = canonical.canonical_bytes(body)
    digest = canonical.entry_hash(data)
    aconn.execute("alter table ledger.entry drop constraint entry_copy_id_prev_hash_key")
    as_attacker(aconn, "insert into ledger.entry (copy_id, seq, prev_hash, entry_hash, ts, entry_type, "
                       "from_user_id, to_user_id, refs, payload, canonical) "
                       "select copy_id, 6, %s, %s, ts, entry_type, from_user_id, to_user_id, refs, payload, %s "
                       "from ledger.entry where copy_id = %s and seq = 5",
                (third["entry_hash"], digest, data, copy_id))
    as_attacker(aconn, "update ledger.chain set head_seq = 6, head_hash = %s where copy_id = %s", (digest, copy_id))
    problem = first(aconn, ledger)
    assert (problem.reason, problem.copy_id, problem.seq) == (verify.BROKEN_LINK, copy_id, 6)


def test_the_fork_constraint_refuses_a_second_child_without_an_attacker(aconn, ledger):
    import psycopg

    third = entry(aconn, ledger["copy"], 3)
    with pytest.raises(psycopg.errors.UniqueViolation, match="entry_copy_id_prev_hash_key"):
        aconn.execute(
            "insert into ledger.entry (copy_id, seq, prev_hash, entry_hash, ts, entry_type, canonical) "
            "values (%s, 9, %s, %s, now(), 'copy_lost', '{}')",
            (ledger["copy"], third["prev_hash"], bytes(32)))


def test_checkpoint_signed_with_another_key(aconn, ledger, key):
    checkpoint.create(aconn, key)
    intruder = checkpoint.load_private_key(checkpoint.generate_private_key_pem())
    checkpoint.create(aconn, intruder)  # an attacker with table access writes one with their own key
    problem = first(aconn, ledger)
    assert problem.reason == verify.BAD_SIGNATURE
    assert "not trusted" in problem.detail


def test_checkpoint_row_altered(aconn, ledger, key):
    checkpoint.create(aconn, key)
    as_attacker(aconn, "update ledger.checkpoint set signature = %s", (bytes(64),))
    assert first(aconn, ledger).reason == verify.BAD_SIGNATURE


def test_checkpoint_leaf_altered(aconn, ledger, key):
    checkpoint.create(aconn, key)
    as_attacker(aconn, "update ledger.checkpoint_head set head_seq = 4 where copy_id = %s", (ledger["copy"],))
    report = verify.verify(aconn, trusted_keys=ledger["keys"])
    assert report.first.reason == verify.CHECKPOINT_MISMATCH
    assert "do not hash to its signed root" in report.first.detail
    assert (verify.CHECKPOINT_MISMATCH, ledger["copy"], 4) in {(p.reason, p.copy_id, p.seq) for p in report.problems}


def test_exported_checkpoint_file_altered_or_missing(aconn, ledger, key):
    cp = checkpoint.create(aconn, key)
    doc = cp.document()
    assert verify.verify(aconn, trusted_keys=ledger["keys"], exported=[doc]).ok
    altered = copylib.deepcopy(doc)
    altered["body"] = altered["body"].replace('"tree_size":2', '"tree_size":3')
    assert first(aconn, ledger, exported=[altered]).reason == verify.CHECKPOINT_MISMATCH
    # A checkpoint the store has but the database lost (its row deleted to hide a rewrite).
    later = checkpoint.create(aconn, key).document()
    as_attacker(aconn, "delete from ledger.checkpoint_head where checkpoint_id = 2")
    as_attacker(aconn, "delete from ledger.checkpoint where checkpoint_id = 2")
    problem = first(aconn, ledger, exported=[doc, later])
    assert problem.reason == verify.CHECKPOINT_MISMATCH
    assert problem.detail.startswith("checkpoint 2 was exported to the object store but is missing")


def test_checkpoint_deleted_from_the_middle(aconn, ledger, key):
    for _ in range(3):
        checkpoint.create(aconn, key)
    as_attacker(aconn, "delete from ledger.checkpoint_head where checkpoint_id = 2")
    as_attacker(aconn, "delete from ledger.checkpoint where checkpoint_id = 2")
    problem = first(aconn, ledger)
    assert (problem.reason, problem.detail) == (verify.CHECKPOINT_MISMATCH, "checkpoint 2 is missing")


def test_proof_with_an_altered_checkpoint_or_another_key_does_not_check(aconn, ledger, key):
    checkpoint.create(aconn, key)
    proof = proofs.inclusion_proof(aconn, ledger["copy"])
    assert proofs.check_proof(proof, [key.public_key()]) == []
    altered = copylib.deepcopy(proof)
    altered["checkpoint"]["body"] = altered["checkpoint"]["body"].replace('"checkpoint_id":1', '"checkpoint_id":7')
    assert proofs.check_proof(altered, [key.public_key()])[0].startswith("bad signature")
    other = checkpoint.load_private_key(checkpoint.generate_private_key_pem())
    assert "not among the trusted keys" in proofs.check_proof(proof, [other.public_key()])[0]
    forged = copylib.deepcopy(proof)
    forged["entries"][1] = forged["entries"][1].replace("step 1", "step X")
    assert "entry 3: broken link" in proofs.check_proof(forged, [key.public_key()])[0]


def test_workers_over_copy_id_ranges_report_exactly_what_one_process_does(aconn, people, ledger, key):
    # Large ledgers are verified by one process per core, each over a copy-id range in the same exported
    # snapshot; here two workers must find the same problems, in the same order, as a single scan.
    more = [make_copy(aconn, people["alice"]) for _ in range(4)]
    for c in more:
        chain.append(aconn, copy_id=c, entry_type="copy_created")
        chain.append(aconn, copy_id=c, entry_type="request_created", payload={"c": c})
    checkpoint.create(aconn, key)
    clean = [verify.verify(aconn, trusted_keys=ledger["keys"], workers=n) for n in (1, 2)]
    assert [(r.ok, r.copies, r.entries) for r in clean] == [(True, 6, 15)] * 2
    as_attacker(aconn, "update ledger.entry set payload = '{\"n\": 9}' where copy_id = %s and seq = 2",
                (ledger["copy"],))
    as_attacker(aconn, "delete from ledger.entry where copy_id = %s and seq = 2", (ledger["other"],))
    for c in more[::2]:
        as_attacker(aconn, "delete from ledger.entry where copy_id = %s", (c,))
    one, two = (verify.verify(aconn, trusted_keys=ledger["keys"], workers=n) for n in (1, 2))
    assert one.problems == two.problems
    assert (one.copies, one.entries) == (two.copies, two.entries) == (4, 10)
    assert {(p.copy_id, p.reason) for p in two.problems} == {
        (ledger["copy"], verify.CONTENT_MISMATCH), (ledger["other"], verify.MISSING_ENTRY),
        *((c, verify.CHECKPOINT_MISMATCH) for c in more[::2])}
