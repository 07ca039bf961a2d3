"""The one way to announce a state change: an outbox row in the caller's transaction."""

from __future__ import annotations

import psycopg
from psycopg.types.json import Jsonb

from covr_core.shared.events import Event


def append_event(conn: psycopg.Connection, event: Event, *, idempotency_key: str | None = None) -> int | None:
    """Append `event` inside the caller's open transaction; it commits or rolls back with the change.

    The idempotency key defaults to the event type and its subject, so announcing the same fact twice
    (a re-run of a batch) stores one event. Returns the new event id, or None for a repeat.
    """
    payload = event.model_dump(mode="json")
    key = idempotency_key or default_idempotency_key(event)
    row = conn.execute(
        """
        insert into outbox.event (type, idempotency_key, payload)
        values (%s, %s, %s)
        on conflict (idempotency_key) do nothing
        returning event_id
        """,
        (event.event, key, Jsonb(payload)),
    ).fetchone()
    if row is None:
        return None
    return row["event_id"] if isinstance(row, dict) else row[0]


_SUBJECT_FIELD = {
    "ImageUploaded": "image_id",
    "BookIdentified": "image_id",
    "DedupResolved": "image_id",
    "RequestCreated": "request_id",
    "ExchangeAccepted": "exchange_id",
    "ExchangeCompleted": "exchange_id",
    "ExchangeSuspected": "suspected_exchange_id",
    "RequestDeclined": "request_id",
    "RequestCancelled": "request_id",
    "ReturnStarted": "exchange_id",
    "ReturnCancelled": "exchange_id",
    "SuspectedExchangeDismissed": "suspected_exchange_id",
    "CopyUpdated": "change_id",
    "CopyWithdrawn": "copy_id",
    "CopyLost": "copy_id",
    "BookUpdated": "change_id",
    "MemberRenamed": "change_id",
}


def default_idempotency_key(event: Event) -> str:
    return f"{event.event}:{getattr(event, _SUBJECT_FIELD[event.event])}"
