"""Mail deliveries: one row per notification, sent once, retried with backoff, and visible when it fails.

Sending holds the delivery's row lock (FOR UPDATE SKIP LOCKED) in a short transaction around the SMTP
exchange for that one message, and marks it sent in the same transaction. So:
- two workers never send the same mail: the second skips the locked row;
- a worker that dies before the server accepted the message leaves the row pending (Postgres rolls back
  and drops the lock when the connection goes), and the next round sends it: nothing is lost;
- a mail marked sent is never picked again.
The one window left is a crash between the server's "250 accepted" and our commit, microseconds wide: that
mail goes out again on resume, with the same Message-ID (`mail.message_id`), which mail clients show once.
No SMTP server offers more than that; it is the at-least-once end of the trade, chosen over losing mail.
"""

from __future__ import annotations

from dataclasses import dataclass

import psycopg

from covr_core.notifications.mail import Mailer, SendFailed, compose
from covr_core.notifications.rules import retry_delay_s

# Seconds to wait after the 1st, 2nd, ... failed attempt; a failure after the last is final.
BACKOFF_S = (60, 300, 1500, 7200)


@dataclass(frozen=True)
class SendReport:
    sent: int = 0
    retrying: int = 0  # failed this round, due again later
    failed: int = 0  # failed for good this round
    stopped: str | None = None  # why the round stopped early (the connection was lost)


def send_due(conn: psycopg.Connection, mailer: Mailer, *, from_address: str, limit: int = 200,
             backoff_s: tuple[int, ...] = BACKOFF_S) -> SendReport:
    """Send the deliveries that are due, oldest first, one transaction each; `conn` autocommits."""
    sent = retrying = failed = 0
    stopped = None
    tried: list[int] = []  # each delivery at most once per round, whatever its backoff
    for _ in range(limit):
        with conn.transaction():
            row = conn.execute(
                """
                select d.notification_id, d.to_address, d.attempts, n.event_id, n.kind, n.payload,
                       u.display_name
                from notification.email_delivery d
                join notification.notification n using (notification_id)
                join contact.user u on u.user_id = n.recipient_id
                where d.status = 'pending' and d.next_attempt_at <= now() and d.notification_id <> all(%s)
                order by d.next_attempt_at, d.notification_id
                limit 1
                for update of d skip locked
                """,
                (tried,),
            ).fetchone()
            if row is None:
                break
            tried.append(row["notification_id"])
            message = compose(
                notification_id=row["notification_id"], event_id=row["event_id"], kind=row["kind"],
                payload=row["payload"], to_address=row["to_address"], recipient_name=row["display_name"],
                from_address=from_address,
            )
            try:
                mailer.send(message)
            except SendFailed as exc:
                attempts = row["attempts"] + 1
                delay = None if exc.permanent else retry_delay_s(attempts, backoff_s)
                _record_failure(conn, row["notification_id"], attempts, delay, exc.reason)
                if delay is None:
                    failed += 1
                else:
                    retrying += 1
                if exc.connection_lost:
                    stopped = exc.reason
                    break
            else:
                conn.execute(
                    """
                    update notification.email_delivery
                    set status = 'sent', attempts = attempts + 1, sent_at = now(), next_attempt_at = null
                    where notification_id = %s
                    """,
                    (row["notification_id"],),
                )
                sent += 1
    return SendReport(sent, retrying, failed, stopped)


def _record_failure(conn, notification_id: int, attempts: int, delay_s: int | None, reason: str) -> None:
    if delay_s is None:
        conn.execute(
            """
            update notification.email_delivery
            set status = 'failed', attempts = %s, next_attempt_at = null, last_error = %s
            where notification_id = %s
            """,
            (attempts, reason[:2000], notification_id),
        )
    else:
        conn.execute(
            """
            update notification.email_delivery
            set attempts = %s, next_attempt_at = now() + make_interval(secs => %s), last_error = %s
            where notification_id = %s
            """,
            (attempts, delay_s, reason[:2000], notification_id),
        )


@dataclass(frozen=True)
class DeliverySummary:
    pending: int
    due: int  # pending and due now
    retrying: int  # pending after at least one failed attempt
    sent: int
    failed: int


def summary(conn: psycopg.Connection) -> DeliverySummary:
    row = conn.execute(
        """
        select count(*) filter (where status = 'pending') as pending,
               count(*) filter (where status = 'pending' and next_attempt_at <= now()) as due,
               count(*) filter (where status = 'pending' and attempts > 0) as retrying,
               count(*) filter (where status = 'sent') as sent,
               count(*) filter (where status = 'failed') as failed
        from notification.email_delivery
        """
    ).fetchone()
    return DeliverySummary(**row)


def troubled(conn: psycopg.Connection, *, limit: int = 50) -> list[dict]:
    """Failed deliveries and pending ones that have failed before, worst first, for the operator."""
    return conn.execute(
        """
        select d.notification_id, d.to_address, d.status, d.attempts, d.next_attempt_at, d.last_error,
               n.kind, n.recipient_id
        from notification.email_delivery d join notification.notification n using (notification_id)
        where d.status = 'failed' or (d.status = 'pending' and d.attempts > 0)
        order by d.status = 'failed' desc, d.notification_id
        limit %s
        """,
        (limit,),
    ).fetchall()


def retry_failed(conn: psycopg.Connection, notification_ids: list[int] | None = None) -> list[int]:
    """Put failed deliveries (all, or the named ones) back in the queue, due now, with a full set of attempts."""
    with conn.transaction():
        rows = conn.execute(
            """
            update notification.email_delivery
            set status = 'pending', attempts = 0, next_attempt_at = now()
            where status = 'failed' and (%(ids)s::bigint[] is null or notification_id = any(%(ids)s::bigint[]))
            returning notification_id
            """,
            {"ids": notification_ids},
        ).fetchall()
    return sorted(r["notification_id"] for r in rows)
