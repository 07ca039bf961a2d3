"""The in-app inbox: notices from outbox events become rows per member, read and marked read through the API."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import psycopg
from psycopg.types.json import Jsonb

from covr_core.notifications.rules import Notice, notices_for
from covr_core.shared.consumer import OutboxEvent
from covr_core.shared.errors import NotFound
from covr_core.shared.ids import is_uuid

log = logging.getLogger(__name__)

CONSUMER = "notifications"


@dataclass(frozen=True)
class Recorded:
    notifications: int  # inbox rows added (a replayed event adds none)
    mails: int  # mail deliveries queued


def record_events(conn: psycopg.Connection, events: Sequence[OutboxEvent], *, mail: bool) -> Recorded:
    """Write the inbox rows for a batch of events, and queue a mail for each when `mail` is on.

    Runs in the consumer's transaction, so the rows commit with its cursor. A mail is queued only for a new
    row and a recipient with an e-mail address: a replayed event queues nothing, so nobody is mailed twice.
    """
    added = queued = 0
    for event in events:
        for notice in notices_for(event.type, event.payload):
            if not is_uuid(notice.recipient_id):
                log.warning("event %s (%s) names recipient %r, not a user id: not notified",
                            event.event_id, event.type, notice.recipient_id)
                continue
            facts = _facts(conn, event, notice)
            if facts is None:
                log.warning("event %s (%s) names user %s, who does not exist: not notified",
                            event.event_id, event.type, notice.recipient_id)
                continue
            payload, email = facts
            row = conn.execute(
                """
                insert into notification.notification (event_id, recipient_id, kind, payload, created_at)
                values (%s, %s, %s, %s, %s)
                on conflict (event_id, recipient_id) do nothing
                returning notification_id
                """,
                (event.event_id, notice.recipient_id, notice.kind, Jsonb(payload), event.created_at),
            ).fetchone()
            if row is None:
                continue
            added += 1
            if mail and email:
                conn.execute(
                    "insert into notification.email_delivery (notification_id, to_address) values (%s, %s) "
                    "on conflict (notification_id) do nothing",
                    (_id(row, "notification_id"), email),
                )
                queued += 1
    return Recorded(added, queued)


def _facts(conn: psycopg.Connection, event: OutboxEvent, notice: Notice) -> tuple[dict, str | None] | None:
    """What the message names, as it is now: the book's title, the other person's name, the request's kind."""
    other_id = notice.other_id if is_uuid(notice.other_id) else None
    copy_id = notice.copy_id if is_uuid(notice.copy_id) else None
    request_id = notice.refs.get("request_id")
    row = conn.execute(
        """
        select r.email,
               (select display_name from contact.user where user_id = %(other)s) as other_name,
               (select b.title from catalog.copy c join catalog.book b using (book_id)
                where c.copy_id = %(copy)s) as title,
               (select c.book_id from catalog.copy c where c.copy_id = %(copy)s) as book_id,
               (select q.kind from exchange.request q where q.request_id = %(request)s) as request_kind
        from contact.user r where r.user_id = %(recipient)s
        """,
        {"recipient": notice.recipient_id, "other": other_id, "copy": copy_id,
         "request": request_id if is_uuid(request_id) else None},
    ).fetchone()
    if row is None:
        return None
    payload = {
        "event_type": event.type,
        "copy_id": copy_id,
        "book_id": str(row["book_id"]) if row["book_id"] else None,
        "title": row["title"],
        "other_user_id": other_id,
        "other_name": row["other_name"],
        "request_kind": row["request_kind"],
        **dict(notice.refs),
    }
    if event.payload.get("reason"):
        payload["reason"] = str(event.payload["reason"])[:500]
    return payload, row["email"]


_COLUMNS = "notification_id, kind, payload, created_at, read_at"


def list_for(conn: psycopg.Connection, user_id: str, *, unread: bool | None = None, limit: int = 50,
             offset: int = 0) -> tuple[list[dict], int]:
    """A member's notifications, newest first (unread only, read only, or all), and how many match in all."""
    which = {None: "", True: "and read_at is null", False: "and read_at is not null"}[unread]
    rows = conn.execute(
        f"""
        select {_COLUMNS} from notification.notification
        where recipient_id = %s {which}
        order by notification_id desc
        limit %s offset %s
        """,
        (user_id, limit, offset),
    ).fetchall()
    count = conn.execute(
        f"select count(*) as n from notification.notification where recipient_id = %s {which}", (user_id,)
    ).fetchone()
    return rows, _id(count, "n")


def unread_count(conn: psycopg.Connection, user_id: str) -> int:
    row = conn.execute(
        "select count(*) as n from notification.notification where recipient_id = %s and read_at is null",
        (user_id,),
    ).fetchone()
    return _id(row, "n")


def mark_read(conn: psycopg.Connection, user_id: str, notification_id: int) -> dict:
    """Mark one of the member's notifications read (again is a no-op); someone else's is not found."""
    with conn.transaction():
        row = conn.execute(
            f"""
            update notification.notification set read_at = coalesce(read_at, now())
            where notification_id = %s and recipient_id = %s
            returning {_COLUMNS}
            """,
            (notification_id, user_id),
        ).fetchone()
    if row is None:
        raise NotFound(f"notification {notification_id} not found", notification_id=notification_id)
    return row


def mark_all_read(conn: psycopg.Connection, user_id: str) -> int:
    """Mark every unread notification of the member read; returns how many were unread."""
    with conn.transaction():
        cur = conn.execute(
            "update notification.notification set read_at = now() where recipient_id = %s and read_at is null",
            (user_id,),
        )
    return cur.rowcount


def _id(row, name: str):
    return row[name] if isinstance(row, dict) else row[0]
