"""The append path: framing, genesis, timestamps that survive any TimeZone, I-JSON payloads only."""

from __future__ import annotations

import hashlib
import json
import math

import psycopg
import pytest

from covr_core.ledger import canonical, chain, verify
from covr_core.shared.errors import InvalidInput, NotFound


def test_first_entry_follows_the_genesis_constant_and_the_head_moves(aconn, copy_id, people):
    first = chain.append(aconn, copy_id=copy_id, entry_type="copy_created", to_user_id=people["alice"],
                         evidence=chain.Evidence("6c1f7f0c-9c1b-4d36-9b1c-3c2c2f1d4e5f", "ab" * 32, 2**63 + 5))
    second = chain.append(aconn, copy_id=copy_id, entry_type="request_created", from_user_id=people["bob"],
                          payload={"message": "may I?"})

    assert (first.seq, first.prev_hash) == (1, bytes(32))
    assert (second.seq, second.prev_hash) == (2, first.entry_hash)
    head = aconn.execute("select head_seq, head_hash from ledger.chain where copy_id = %s", (copy_id,)).fetchone()
    assert (head["head_seq"], bytes(head["head_hash"])) == (2, second.entry_hash)
    row = aconn.execute("select canonical, refs from ledger.entry where copy_id = %s and seq = 1",
                        (copy_id,)).fetchone()
    # The stored bytes are what was hashed, behind the domain tag, and they frame every field.
    assert hashlib.sha256(canonical.ENTRY_TAG + bytes(row["canonical"])).digest() == first.entry_hash
    framed = json.loads(bytes(row["canonical"]))
    assert sorted(framed) == sorted(["v", "copy_id", "seq", "prev_hash", "ts_us", "entry_type", "from_user_id",
                                     "to_user_id", "refs", "payload"])
    assert framed["ts_us"] == canonical.epoch_us(first.ts)
    assert row["refs"]["evidence"]["phash"] == f"{(2**63 + 5):016x}"
    assert verify.verify(aconn).ok


def test_the_canonical_bytes_are_rfc8785():
    body = canonical.framed(copy_id="6c1f7f0c-9c1b-4d36-9b1c-3c2c2f1d4e5f", seq=1, prev_hash=bytes(32), ts_us=0,
                            entry_type="copy_created", from_user_id=None, to_user_id=None,
                            refs={}, payload={"z": 1, "a": "é", "m": [True, None]})
    data = canonical.canonical_bytes(body)
    assert data.startswith(b'{"copy_id":"6c1f7f0c')
    assert b'"payload":{"a":"\xc3\xa9","m":[true,null],"z":1}' in data
    assert b" " not in data


@pytest.mark.parametrize("bad", [1.5, float("nan"), math.inf, 1e20, 2**53, "a\x00b", "\ud800", {1: "x"}, b"raw"])
def test_a_payload_that_is_not_ijson_is_refused_before_any_write(aconn, copy_id, bad):
    with pytest.raises(InvalidInput) as caught:
        chain.append(aconn, copy_id=copy_id, entry_type="copy_created", payload={"value": bad})
    assert "payload" in caught.value.detail
    assert aconn.execute("select count(*) as n from ledger.entry").fetchone()["n"] == 0
    assert aconn.execute("select count(*) as n from ledger.chain").fetchone()["n"] == 0


def test_an_unknown_entry_type_or_copy_is_refused(aconn, copy_id):
    with pytest.raises(InvalidInput, match="handed_over"):
        chain.append(aconn, copy_id=copy_id, entry_type="handed_over")
    with pytest.raises(NotFound, match="6c1f7f0c"):
        chain.append(aconn, copy_id="6c1f7f0c-9c1b-4d36-9b1c-3c2c2f1d4e5f", entry_type="copy_created")
    with pytest.raises(psycopg.errors.CheckViolation):
        aconn.execute("insert into ledger.chain (copy_id) values (%s)", (copy_id,))
        aconn.execute(
            "insert into ledger.entry (copy_id, seq, prev_hash, entry_hash, ts, entry_type, canonical) "
            "values (%s, 1, %s, %s, now(), 'handed_over', '{}')", (copy_id, bytes(32), bytes(32)))


def test_a_session_in_europe_berlin_appends_and_verifies(db_url, copy_id):
    with psycopg.connect(db_url, autocommit=True, options="-c TimeZone=Europe/Berlin") as berlin:
        appended = chain.append(berlin, copy_id=copy_id, entry_type="copy_created")
        assert appended.ts.utcoffset().total_seconds() in (3600, 7200)  # read back in Berlin time
        assert verify.verify(berlin).ok
    with psycopg.connect(db_url, autocommit=True, options="-c TimeZone=Pacific/Chatham") as elsewhere:
        assert verify.verify(elsewhere).ok


def test_an_entry_whose_microseconds_are_zero_verifies(aconn, copy_id):
    # isoformat() of such a value drops its ".000000", so a hash over isoformat would not round-trip.
    with aconn.transaction():
        aconn.execute("insert into ledger.chain (copy_id) values (%s)", (copy_id,))
    ts = aconn.execute("select date_trunc('second', now()) as ts").fetchone()["ts"]
    body = canonical.framed(copy_id=copy_id, seq=1, prev_hash=bytes(32), ts_us=canonical.epoch_us(ts),
                            entry_type="copy_created", from_user_id=None, to_user_id=None, refs={}, payload={})
    data = canonical.canonical_bytes(body)
    with aconn.transaction():
        aconn.execute(
            "insert into ledger.entry (copy_id, seq, prev_hash, entry_hash, ts, entry_type, canonical) "
            "values (%s, 1, %s, %s, %s, 'copy_created', %s)", (copy_id, bytes(32), canonical.entry_hash(data), ts, data))
        aconn.execute("update ledger.chain set head_seq = 1, head_hash = %s where copy_id = %s",
                      (canonical.entry_hash(data), copy_id))
    assert ts.microsecond == 0 and ts.isoformat().count(".") == 0
    assert verify.verify(aconn).ok
    # And the real path keeps going from it.
    chain.append(aconn, copy_id=copy_id, entry_type="copy_withdrawn")
    assert verify.verify(aconn).ok


def test_rows_are_append_only(aconn, copy_id):
    chain.append(aconn, copy_id=copy_id, entry_type="copy_created")
    for statement, op in [("update ledger.entry set payload = '{}'", "UPDATE"),
                          ("delete from ledger.entry", "DELETE"),
                          ("truncate ledger.entry cascade", "TRUNCATE"),
                          ("delete from ledger.chain", "DELETE")]:
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match=f"append-only: {op} refused"):
            aconn.execute(statement)
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="head may only move"):
        aconn.execute("update ledger.chain set head_seq = 0")


def test_append_inside_the_callers_transaction_rolls_back_with_it(aconn, copy_id):
    class Boom(Exception):
        pass

    with pytest.raises(Boom), aconn.transaction():
        chain.append(aconn, copy_id=copy_id, entry_type="copy_created")
        raise Boom
    assert aconn.execute("select count(*) as n from ledger.entry").fetchone()["n"] == 0
    with aconn.transaction():
        appended = chain.append(aconn, copy_id=copy_id, entry_type="copy_created")
    assert appended.seq == 1
