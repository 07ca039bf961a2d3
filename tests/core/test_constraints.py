"""The database itself refuses rows that break Covr's invariants."""

from __future__ import annotations

import psycopg
import pytest


@pytest.fixture
def alice(conn):
    return conn.execute(
        "insert into contact.user (handle, display_name) values ('alice', 'Alice') returning user_id"
    ).fetchone()["user_id"]


@pytest.fixture
def book(conn):
    return conn.execute(
        "insert into catalog.book (isbn13, title, authors) values ('9780306406157', 'Physics', '{A. Author}') "
        "returning book_id"
    ).fetchone()["book_id"]


@pytest.fixture
def copy(conn, book, alice):
    return conn.execute(
        "insert into catalog.copy (book_id, owner_id, current_holder_id) values (%s, %s, %s) returning copy_id",
        (book, alice, alice),
    ).fetchone()["copy_id"]


def test_isbn13_checksum_is_enforced(conn):
    with pytest.raises(psycopg.errors.CheckViolation, match="book_isbn13_check"):
        conn.execute("insert into catalog.book (isbn13, title) values ('9780306406158', 'Bad checksum')")


def test_unknown_copy_status_is_refused(conn, copy):
    with pytest.raises(psycopg.errors.CheckViolation, match="copy_status_check"):
        conn.execute("update catalog.copy set status = 'borrowed-ish' where copy_id = %s", (copy,))


def test_condition_grade_out_of_range_is_refused(conn, copy):
    with pytest.raises(psycopg.errors.CheckViolation, match="copy_condition_grade_check"):
        conn.execute("update catalog.copy set condition_grade = 11 where copy_id = %s", (copy,))


def test_degradation_rating_out_of_range_is_refused(conn, copy, alice):
    bob = conn.execute(
        "insert into contact.user (handle, display_name) values ('bob', 'Bob') returning user_id"
    ).fetchone()["user_id"]
    request = conn.execute(
        "insert into exchange.request (copy_id, requester_id, holder_id) values (%s, %s, %s) returning request_id",
        (copy, bob, alice),
    ).fetchone()["request_id"]
    conn.execute("update exchange.request set status = 'accepted' where request_id = %s", (request,))
    exchange = conn.execute(
        "insert into exchange.exchange (request_id, copy_id, from_user_id, to_user_id, kind, origin) "
        "values (%s, %s, %s, %s, 'borrow', 'request') returning exchange_id",
        (request, copy, alice, bob),
    ).fetchone()["exchange_id"]
    with pytest.raises(psycopg.errors.CheckViolation, match="degradation_rating_rating_check"):
        conn.execute(
            "insert into exchange.degradation_rating (exchange_id, copy_id, rated_by, rating) values (%s,%s,%s,11)",
            (exchange, copy, bob),
        )


def test_rejected_image_needs_a_reason(conn, alice):
    with pytest.raises(psycopg.errors.CheckViolation, match="image_check"):
        conn.execute(
            "insert into media.image (object_key, uploader_id, status, byte_size) "
            "values ('uploads/x/y.jpg', %s, 'rejected', 0)",
            (alice,),
        )


def test_unknown_dedup_decision_is_refused(conn, alice):
    image = conn.execute(
        "insert into media.image (object_key, uploader_id, status, rejection_reason, byte_size) "
        "values ('uploads/x/y.jpg', %s, 'rejected', 'file is empty (0 bytes)', 0) returning image_id",
        (alice,),
    ).fetchone()["image_id"]
    with pytest.raises(psycopg.errors.CheckViolation, match="dedup_result_decision_check"):
        conn.execute(
            "insert into ingest.dedup_result (image_id, decision, match_reason) values (%s, 'maybe', 'none')",
            (image,),
        )


def _ledger_entry(conn, copy, seq, prev_hash):
    conn.execute("insert into ledger.chain (copy_id) values (%s) on conflict do nothing", (copy,))
    conn.execute(
        "insert into ledger.entry (copy_id, seq, prev_hash, entry_hash, ts, entry_type, canonical) "
        "values (%s, %s, %s, sha256(%s::bytea), now(), 'copy_created', '{}')",
        (copy, seq, prev_hash, str(seq).encode()),
    )


def test_ledger_rows_cannot_be_updated_or_deleted(conn, copy, alice):
    _ledger_entry(conn, copy, 1, bytes(32))
    conn.commit()
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="UPDATE refused"):
        conn.execute("update ledger.entry set entry_type = 'copy_lost'")
    conn.rollback()
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="DELETE refused"):
        conn.execute("delete from ledger.entry")
    conn.rollback()
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="TRUNCATE refused"):
        conn.execute("truncate ledger.entry")
    conn.rollback()
    assert conn.execute("select entry_type from ledger.entry").fetchall() == [{"entry_type": "copy_created"}]


def test_ledger_seq_is_unique_per_copy(conn, copy):
    _ledger_entry(conn, copy, 2, b"a" * 32)
    with pytest.raises(psycopg.errors.UniqueViolation):
        _ledger_entry(conn, copy, 2, b"b" * 32)
