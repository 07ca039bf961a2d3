"""The one append path of the ledger: lock the chain's head row, insert seq+1 onto the head's hash, move the head.

Why the head row, and why READ COMMITTED (tests/core/test_ledger_concurrency.py shows both failures):
- "read the last entry, then insert" forks: two writers read the same tail and both insert seq+1;
- locking the tail entry (`select ... order by seq desc limit 1 for update`) forks too: the second writer waits
  on the old tail, and when the first commits it gets that same old row back (the row still matches, and the
  new tail was not visible when its query started), so it inserts a second child of the same parent. With no
  entry at all there is no row to lock, and two genesis entries race;
- the head row (ledger.chain) is one row per copy that every append locks *and* moves, so the second writer
  waits on it and, in READ COMMITTED, re-reads the moved head when the lock is granted;
- under REPEATABLE READ every statement reads the transaction's first snapshot: a lock taken on one row and a
  head read from another row would read a stale head and fork, and a lock on the moved head row itself fails
  with a serialization error at every retry inside that transaction. So the append refuses any isolation but
  READ COMMITTED instead of hoping for the best.
UNIQUE (copy_id, seq) and UNIQUE (copy_id, prev_hash) reject a fork even if a writer bypasses this module.

Retries. A serialization failure, deadlock or unique violation aborts the statement, and in Postgres the whole
transaction with it, so a retry is only possible where the work can be redone:
- called outside a transaction (an autocommit connection, idle), `append` opens its own transaction and
  redoes all of it, up to `attempts` times;
- called inside the caller's transaction (the usual case: an exchange transition appends in the transaction
  that changes the request), `append` runs in a savepoint (`conn.transaction()` nested) and redoes only the
  savepoint: ROLLBACK TO SAVEPOINT releases the head lock and the partial insert, keeps the caller's work, and
  in READ COMMITTED the next try reads the head afresh. A deadlock against locks the caller took *before* the
  savepoint can recur; after `attempts` tries `LedgerContention` propagates and the caller's transaction must
  be redone whole, which `redo_on_conflict(conn, work)` does for a unit of work.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

import psycopg
from psycopg import errors as pg_errors
from psycopg.types.json import Jsonb

from covr_core.ledger import canonical
from covr_core.shared.errors import Conflict, NotFound

DEFAULT_ATTEMPTS = 5
RETRIED = (pg_errors.SerializationFailure, pg_errors.DeadlockDetected, pg_errors.UniqueViolation)
T = TypeVar("T")


class LedgerContention(Conflict):
    """The append kept colliding with concurrent writers; redo the caller's unit of work."""

    code = "ledger_contention"


class WrongIsolation(RuntimeError):
    """A programming error: the ledger is appended only in READ COMMITTED (see the module docstring)."""


@dataclass(frozen=True)
class Evidence:
    """The photo that triggered an entry."""

    image_id: str
    sha256: str
    phash: int | None = None

    def as_ref(self) -> dict:
        # A 64-bit pHash can exceed I-JSON's 2**53 integer range: 16 hex digits, as media shows it.
        return {
            "image_id": str(self.image_id),
            "sha256": self.sha256,
            "phash": None if self.phash is None else f"{self.phash & (2**64 - 1):016x}",
        }


@dataclass(frozen=True)
class Appended:
    copy_id: str
    seq: int
    prev_hash: bytes
    entry_hash: bytes
    ts: datetime
    entry_type: str


def append(
    conn: psycopg.Connection,
    *,
    copy_id: Any,
    entry_type: str,
    from_user_id: Any = None,
    to_user_id: Any = None,
    refs: dict | None = None,
    payload: dict | None = None,
    evidence: Evidence | None = None,
    attempts: int = DEFAULT_ATTEMPTS,
) -> Appended:
    """Append one entry to the copy's chain, in the caller's transaction when there is one (see module doc)."""
    refs = dict(refs or {})
    if evidence is not None:
        refs["evidence"] = evidence.as_ref()
    payload = dict(payload or {})
    # Validate before any SQL: a bad payload is refused with a clear error and nothing is locked.
    canonical.framed(
        copy_id=copy_id, seq=1, prev_hash=canonical.GENESIS_HASH, ts_us=0, entry_type=entry_type,
        from_user_id=from_user_id, to_user_id=to_user_id, refs=refs, payload=payload,
    )
    for attempt in range(1, attempts + 1):
        try:
            with conn.transaction():
                return _append_once(conn, copy_id, entry_type, from_user_id, to_user_id, refs, payload)
        except pg_errors.ForeignKeyViolation as exc:
            raise NotFound(f"copy {copy_id} not found (or a user of its ledger entry is unknown): {exc.diag.message_detail}") from None
        except RETRIED as exc:
            if isinstance(exc, pg_errors.SerializationFailure):
                _require_read_committed(conn)
            if attempt == attempts:
                raise LedgerContention(
                    f"ledger append to copy {copy_id} failed {attempts} times ({type(exc).__name__}); redo the unit of work",
                    copy_id=str(copy_id),
                ) from exc
            time.sleep(random.uniform(0, 0.002 * 2**attempt))
    raise AssertionError("unreachable")


def _append_once(conn, copy_id, entry_type, from_user_id, to_user_id, refs, payload) -> Appended:
    head = _lock_head(conn, copy_id)
    if head is None:
        conn.execute("insert into ledger.chain (copy_id) values (%s) on conflict do nothing", (copy_id,))
        head = _lock_head(conn, copy_id)
    head_seq, head_hash, isolation, ts = head
    if isolation != "read committed":
        raise WrongIsolation(
            f"ledger append to copy {copy_id} runs in {isolation.upper()}; it must run in READ COMMITTED, "
            "where the locked head is re-read (other levels fork or fail at every retry)"
        )
    seq = head_seq + 1
    body = canonical.framed(
        copy_id=copy_id, seq=seq, prev_hash=bytes(head_hash), ts_us=canonical.epoch_us(ts),
        entry_type=entry_type, from_user_id=from_user_id, to_user_id=to_user_id, refs=refs, payload=payload,
    )
    data = canonical.canonical_bytes(body)
    digest = canonical.entry_hash(data)
    conn.execute(
        """
        insert into ledger.entry (copy_id, seq, prev_hash, entry_hash, ts, entry_type, from_user_id, to_user_id,
                                  refs, payload, canonical)
        values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
        """,
        (copy_id, seq, bytes(head_hash), digest, ts, entry_type, from_user_id, to_user_id,
         Jsonb(refs), Jsonb(payload), data),
    )
    conn.execute(
        "update ledger.chain set head_seq = %s, head_hash = %s, updated_at = %s where copy_id = %s",
        (seq, digest, ts, copy_id),
    )
    return Appended(str(body["copy_id"]), seq, bytes(head_hash), digest, ts, entry_type)


def _lock_head(conn, copy_id):
    # clock_timestamp(), read after the lock is granted, keeps timestamps in chain order.
    row = conn.execute(
        """
        select head_seq, head_hash, current_setting('transaction_isolation'), clock_timestamp()
        from ledger.chain where copy_id = %s for update
        """,
        (copy_id,),
        prepare=True,
    ).fetchone()
    if row is None:
        return None
    return tuple(row.values()) if isinstance(row, dict) else tuple(row)


def _require_read_committed(conn) -> None:
    row = conn.execute("select current_setting('transaction_isolation')").fetchone()
    isolation = next(iter(row.values())) if isinstance(row, dict) else row[0]
    if isolation != "read committed":
        raise WrongIsolation(
            f"ledger append runs in {isolation.upper()}; it must run in READ COMMITTED (a retry inside this "
            "transaction reads the same snapshot and can never succeed)"
        )


def redo_on_conflict(conn: psycopg.Connection, work: Callable[[], T], *, attempts: int = DEFAULT_ATTEMPTS) -> T:
    """Run `work` in a transaction of its own, redoing all of it on a serialization failure, deadlock,
    unique violation or LedgerContention. For callers whose unit of work appends to the ledger."""
    if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
        raise RuntimeError("redo_on_conflict needs an idle connection: it must own the transaction it redoes")
    for attempt in range(1, attempts + 1):
        try:
            with conn.transaction():
                return work()
        except (*RETRIED, LedgerContention):
            if attempt == attempts:
                raise
            time.sleep(random.uniform(0, 0.002 * 2**attempt))
    raise AssertionError("unreachable")
