"""The one place a completed hand-over reaches the ledger, inside the transaction that completes it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import psycopg


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


def on_handover_completed(conn: psycopg.Connection, handover: CompletedHandover) -> None:
    """Called by exchange in the completion transaction, after the copy moved and before it commits.

    It does nothing yet: the ledger issue appends the entry here (lock the copy's chain head, insert, move the
    head), so a hand-over and its ledger entry commit or roll back together. Raising here rolls the hand-over back.
    """
    return None
