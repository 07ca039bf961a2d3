"""Concurrent appends leave unbroken chains; the two tempting alternatives to the head-row lock fork.

Why the append path locks the head row in READ COMMITTED (covr_core/ledger/chain.py says it at length): a
lock on the tail entry lets the second writer re-read the *old* tail once the first commits, and a
REPEATABLE READ transaction reads its first snapshot whatever it has locked since. Both tests below run the
alternative step by step on two connections and show the second writer computing the same (seq, prev_hash)
as the first, a fork that only the UNIQUE constraints stop.
"""

from __future__ import annotations

import random
import threading
from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest
from psycopg.rows import dict_row

from covr_core.ledger import canonical, chain, verify
from tests.core.ledger_support import make_copy


def _connect(db_url):
    return psycopg.connect(db_url, autocommit=True, row_factory=dict_row)


def assert_unbroken(conn, copies: dict[str, int]) -> None:
    for cid, n in copies.items():
        rows = conn.execute("select seq, prev_hash, entry_hash from ledger.entry where copy_id = %s order by seq",
                            (cid,)).fetchall()
        assert [r["seq"] for r in rows] == list(range(1, n + 1)), "gap"
        parents = [bytes(r["prev_hash"]) for r in rows]
        assert len(set(parents)) == len(parents), "fork"
        assert parents == [canonical.GENESIS_HASH] + [bytes(r["entry_hash"]) for r in rows[:-1]], "broken link"
    assert verify.verify(conn).ok


def test_fifty_concurrent_appends_to_one_copy(db_url, aconn, copy_id):
    start = threading.Barrier(50)

    def one(i):
        with _connect(db_url) as conn:
            start.wait()
            if i % 2:  # half of them inside a caller's transaction that does other work first
                with conn.transaction():
                    conn.execute("select pg_sleep(0.001)")
                    return chain.append(conn, copy_id=copy_id, entry_type="request_created", payload={"i": i}).seq
            return chain.append(conn, copy_id=copy_id, entry_type="request_created", payload={"i": i}).seq

    with ThreadPoolExecutor(50) as pool:
        seqs = list(pool.map(one, range(50)))
    assert sorted(seqs) == list(range(1, 51))
    assert_unbroken(aconn, {copy_id: 50})


def test_two_hundred_appends_over_ten_copies_with_multi_copy_units(db_url, aconn, people):
    copies = [make_copy(aconn, people["alice"]) for _ in range(10)]
    rng = random.Random(7)
    # 120 units of one append and 40 units that append to two copies in random order: those can deadlock
    # against each other, and redo_on_conflict redoes the whole unit when the savepoint retries run out.
    units = [[rng.choice(copies)] for _ in range(120)] + [rng.sample(copies, 2) for _ in range(40)]
    rng.shuffle(units)
    start = threading.Barrier(16)
    counts = {c: 0 for c in copies}
    for unit in units:
        for c in unit:
            counts[c] += 1
    assert sum(counts.values()) == 200

    def worker(k):
        with _connect(db_url) as conn:
            start.wait()
            for unit in units[k::16]:
                def work(unit=unit):
                    for c in unit:
                        chain.append(conn, copy_id=c, entry_type="request_accepted", attempts=2)
                chain.redo_on_conflict(conn, work, attempts=20)

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(worker, range(16)))
    assert_unbroken(aconn, counts)


def _naive_tail_for_update(conn, copy_id):
    """The tempting alternative: lock the tail entry, append after it."""
    return conn.execute(
        "select seq, entry_hash from ledger.entry where copy_id = %s order by seq desc limit 1 for update",
        (copy_id,),
    ).fetchone()


def test_a_tail_row_for_update_would_fork(db_url, aconn, copy_id):
    chain.append(aconn, copy_id=copy_id, entry_type="copy_created")
    with _connect(db_url) as first, _connect(db_url) as second:
        first.execute("begin")
        second.execute("begin")
        tail_1 = _naive_tail_for_update(first, copy_id)
        got = {}
        waiter = threading.Thread(target=lambda: got.update(tail=_naive_tail_for_update(second, copy_id)))
        waiter.start()
        waiter.join(0.5)
        assert waiter.is_alive()  # the second writer waits on the tail's lock ...
        chain.append(first, copy_id=copy_id, entry_type="request_created")  # first appends entry 2
        first.execute("commit")
        waiter.join(5)
        # ... and is handed the OLD tail: the row still matches, the new tail was invisible to its query.
        assert got["tail"]["seq"] == tail_1["seq"] == 1
        assert got["tail"]["entry_hash"] == tail_1["entry_hash"]
        # So it would append a second entry 2 on entry 1: a fork, refused only by the UNIQUE constraints.
        with pytest.raises(psycopg.errors.UniqueViolation):
            second.execute(
                "insert into ledger.entry (copy_id, seq, prev_hash, entry_hash, ts, entry_type, canonical) "
                "values (%s, 2, %s, %s, now(), 'request_created', '{}')",
                (copy_id, got["tail"]["entry_hash"], bytes(32)),
            )
        second.execute("rollback")


def test_a_tail_row_for_update_forks_at_genesis_with_nothing_to_lock(db_url, copy_id):
    with _connect(db_url) as first, _connect(db_url) as second:
        first.execute("begin")
        second.execute("begin")
        # Neither waits: there is no row to lock, so both would write entry 1.
        assert _naive_tail_for_update(first, copy_id) is None
        assert _naive_tail_for_update(second, copy_id) is None
        first.execute("rollback")
        second.execute("rollback")


def test_the_same_code_under_repeatable_read_would_fork(db_url, aconn, copy_id):
    """Lock a row, then read the head: in READ COMMITTED the read after the lock sees the committed head; in
    REPEATABLE READ it sees the transaction's first snapshot, so the second writer appends on a stale head."""
    chain.append(aconn, copy_id=copy_id, entry_type="copy_created")

    def lock_then_read_head(conn):
        conn.execute("select 1 from catalog.copy where copy_id = %s for update", (copy_id,))
        return conn.execute("select max(seq) as seq from ledger.entry where copy_id = %s", (copy_id,)).fetchone()["seq"]

    for isolation, expected_seq_seen in (("repeatable read", 1), ("read committed", 2)):
        with _connect(db_url) as first, _connect(db_url) as second:
            first.execute("begin")
            second.execute(f"begin isolation level {isolation}")
            second.execute("select 1 from ledger.chain limit 1")  # its snapshot starts here
            lock_then_read_head(first)
            waiter_result = {}
            waiter = threading.Thread(target=lambda: waiter_result.update(seq=lock_then_read_head(second)))
            waiter.start()
            waiter.join(0.3)
            assert waiter.is_alive()
            head = aconn.execute("select head_seq from ledger.chain where copy_id = %s", (copy_id,)).fetchone()
            chain.append(first, copy_id=copy_id, entry_type="request_created")
            first.execute("commit")
            waiter.join(5)
            # Under REPEATABLE READ the second writer still sees the old head: it would write the same seq.
            assert waiter_result["seq"] == head["head_seq"] + (expected_seq_seen - 1)
            second.execute("rollback")


def test_the_append_refuses_repeatable_read(db_url, aconn, copy_id):
    chain.append(aconn, copy_id=copy_id, entry_type="copy_created")
    with _connect(db_url) as conn:
        for level in ("repeatable read", "serializable"):
            with pytest.raises(chain.WrongIsolation, match="READ COMMITTED"):
                with conn.transaction():
                    conn.execute(f"set transaction isolation level {level}")
                    chain.append(conn, copy_id=copy_id, entry_type="request_created")
    assert aconn.execute("select head_seq from ledger.chain").fetchone()["head_seq"] == 1


def test_under_repeatable_read_the_head_lock_cannot_succeed_by_retrying(db_url, aconn, copy_id):
    """Why a savepoint retry is no cure under REPEATABLE READ: the locked head was moved after the snapshot,
    and every retry inside the transaction reads the same snapshot again."""
    chain.append(aconn, copy_id=copy_id, entry_type="copy_created")
    with _connect(db_url) as conn:
        conn.execute("begin isolation level repeatable read")
        conn.execute("select 1")
        chain.append(aconn, copy_id=copy_id, entry_type="request_created")  # moves the head meanwhile
        for _ in range(3):
            with pytest.raises(psycopg.errors.SerializationFailure):
                with conn.transaction():
                    conn.execute("select head_seq from ledger.chain where copy_id = %s for update", (copy_id,))
        conn.execute("rollback")
