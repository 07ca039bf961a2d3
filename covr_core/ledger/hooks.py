"""The one module through which a copy's state changes reach its ledger, each inside the transaction that makes it.

Every hook appends one entry (chain.append, the one append path) in the caller's open transaction, so the
change and its entry commit or roll back together: a refused or failed transition appends nothing, and a
failed append (say, LedgerContention) rolls the change back. A hook called outside a transaction is a bug
and raises.

Who calls which hook. The import-linter layers put catalog *below* ledger (ledger reads catalog.copy), so
catalog cannot call the ledger; the contexts above it do, right after the catalog or exchange function that
made the change, in the same transaction:
- dedup.ingest.apply_outcome: `on_copy_created` after catalog.copies.create_copy (a copy created by ingest),
  with the photo that made it as evidence;
- exchange.requests / exchange.handovers / exchange.suspected: `on_request_created`, `_accepted`,
  `_declined`, `_cancelled`, `on_handover_completed` (with its rating) and `on_suspected_exchange_confirmed`
  (with the photo), next to each transition's outbox event;
- exchange.circulation: `on_copy_withdrawn` and `on_copy_lost`. Withdrawing and losing a copy are catalog's
  changes (catalog.copies.withdraw_copy / mark_copy_lost); exchange.circulation wraps each in one transaction
  that calls catalog, then the hook. The API routes call exchange.circulation, never catalog's functions
  directly. Putting the hook inside catalog would invert the layers; putting it in the route would leave the
  domain without a function that does the whole step.

Entries: `from_user_id` is the member who acted (or, for a hand-over, who gave the copy), `to_user_id` the other
party (the receiver). `refs` holds the ids of the rows the entry is about (request, exchange, suspicion, book,
ingest run) and, when a photo triggered it, `evidence` {image_id, sha256, phash}. Only I-JSON goes in (ints,
strings, null). The entry types are canonical.ENTRY_TYPES, one CHECKed enum in ledger.entry (migration 0014).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import psycopg

from covr_core.ledger import chain
from covr_core.ledger.chain import Evidence


@dataclass(frozen=True)
class CompletedHandover:
    """What the ledger is told about a hand-over; the ledger owns this shape, exchange fills it."""

    exchange_id: str
    copy_id: str
    kind: str  # borrow | keep | return
    origin: str  # request | suspected | return
    from_user_id: str
    to_user_id: str
    owner_id: str  # after the hand-over: the receiver for keep, unchanged otherwise
    condition_rating: int | None
    completed_at: datetime
    request_id: str | None = None
    suspected_exchange_id: str | None = None
    confirmed_by: str | None = None  # the receiver, or for a suspected exchange either side
    image_id: str | None = None  # the photo that completed it (a suspected exchange)


def _append(conn: psycopg.Connection, *, copy_id: str, entry_type: str, refs: dict, **kwargs) -> chain.Appended:
    if conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE:
        raise RuntimeError(f"ledger hook for {entry_type} of copy {copy_id} called outside a transaction: it must "
                           "run in the transaction of the change it records")
    return chain.append(conn, copy_id=copy_id, entry_type=entry_type,
                        refs={k: str(v) for k, v in refs.items() if v is not None}, **kwargs)


def image_evidence(conn: psycopg.Connection, image_id: str | None) -> Evidence | None:
    """The photo `image_id` as evidence (sha256 and pHash from media.image); None without one."""
    if image_id is None:
        return None
    row = conn.execute("select sha256, phash from media.image where image_id = %s", (image_id,)).fetchone()
    if row is None:
        return None
    sha256, phash = (row["sha256"], row["phash"]) if isinstance(row, dict) else row
    return Evidence(str(image_id), sha256, phash)


def on_copy_created(conn: psycopg.Connection, *, copy_id: str, owner_id: str, book_id: str | None,
                    evidence: Evidence | None, decision: str, run_id: str | None = None) -> chain.Appended:
    """Ingest created the copy from a member's photo (the copy's first entry)."""
    return _append(conn, copy_id=copy_id, entry_type="copy_created", to_user_id=owner_id,
                   refs={"book_id": book_id, "run_id": run_id}, evidence=evidence,
                   payload={"owner_id": str(owner_id), "decision": decision})


def on_request_created(conn: psycopg.Connection, *, request_id: str, copy_id: str, requester_id: str,
                       holder_id: str, kind: str) -> chain.Appended:
    return _append(conn, copy_id=copy_id, entry_type="request_created", from_user_id=requester_id,
                   to_user_id=holder_id, refs={"request_id": request_id}, payload={"kind": kind})


def on_request_accepted(conn: psycopg.Connection, *, request_id: str, copy_id: str, requester_id: str,
                        holder_id: str, kind: str, exchange_id: str) -> chain.Appended:
    return _append(conn, copy_id=copy_id, entry_type="request_accepted", from_user_id=holder_id,
                   to_user_id=requester_id, refs={"request_id": request_id, "exchange_id": exchange_id},
                   payload={"kind": kind})


def on_request_declined(conn: psycopg.Connection, *, request_id: str, copy_id: str, requester_id: str,
                        holder_id: str, accepted_request_id: str | None = None) -> chain.Appended:
    """The holder declined it, or accepted another request for the copy (`accepted_request_id`)."""
    reason = "declined by the holder" if accepted_request_id is None else "another request was accepted"
    return _append(conn, copy_id=copy_id, entry_type="request_declined", from_user_id=holder_id,
                   to_user_id=requester_id,
                   refs={"request_id": request_id, "accepted_request_id": accepted_request_id},
                   payload={"reason": reason})


def on_request_cancelled(conn: psycopg.Connection, *, request_id: str, copy_id: str, requester_id: str,
                         holder_id: str, cancelled_by: str, was: str,
                         exchange_id: str | None = None) -> chain.Appended:
    """Called off by `cancelled_by` while `was` pending or accepted (with its hand-over `exchange_id`)."""
    other = holder_id if cancelled_by == requester_id else requester_id
    return _append(conn, copy_id=copy_id, entry_type="request_cancelled", from_user_id=cancelled_by,
                   to_user_id=other, refs={"request_id": request_id, "exchange_id": exchange_id},
                   payload={"was": was})


def on_handover_completed(conn: psycopg.Connection, handover: CompletedHandover) -> chain.Appended:
    """Called by exchange in the completion transaction, after the copy moved and before it commits."""
    return _append(
        conn, copy_id=handover.copy_id, entry_type="handover_completed", from_user_id=handover.from_user_id,
        to_user_id=handover.to_user_id,
        refs={"exchange_id": handover.exchange_id, "request_id": handover.request_id,
              "suspected_exchange_id": handover.suspected_exchange_id},
        evidence=image_evidence(conn, handover.image_id),
        payload={"kind": handover.kind, "origin": handover.origin, "condition_rating": handover.condition_rating,
                 "owner_id": str(handover.owner_id),
                 "confirmed_by": str(handover.confirmed_by or handover.to_user_id)},
    )


def on_suspected_exchange_confirmed(conn: psycopg.Connection, *, suspected_exchange_id: str, copy_id: str,
                                    image_id: str, uploader_id: str, holder_id: str, confirmed_by: str,
                                    exchange_id: str) -> chain.Appended:
    """A member's photo showed the copy in their hands and a side confirmed it (its hand-over follows)."""
    return _append(conn, copy_id=copy_id, entry_type="exchange_confirmed", from_user_id=holder_id,
                   to_user_id=uploader_id,
                   refs={"suspected_exchange_id": suspected_exchange_id, "exchange_id": exchange_id},
                   evidence=image_evidence(conn, image_id), payload={"confirmed_by": str(confirmed_by)})


def on_copy_withdrawn(conn: psycopg.Connection, *, copy_id: str, owner_id: str, status_before: str) -> chain.Appended:
    return _append(conn, copy_id=copy_id, entry_type="copy_withdrawn", from_user_id=owner_id, refs={},
                   payload={"status_before": status_before})


def on_copy_lost(conn: psycopg.Connection, *, copy_id: str, reported_by: str, owner_id: str, holder_id: str,
                 status_before: str) -> chain.Appended:
    """The owner or the holder reported it lost."""
    return _append(conn, copy_id=copy_id, entry_type="copy_lost", from_user_id=reported_by, refs={},
                   payload={"status_before": status_before, "owner_id": str(owner_id), "holder_id": str(holder_id)})
