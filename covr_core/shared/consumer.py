"""The one outbox reader: a durable cursor per consumer that never passes over an event committed late.

Why not `event_id > cursor`: ids come from a sequence when the row is inserted, but transactions commit in
any order. Transaction A takes id 1, B takes id 2 and commits first; a reader then sees 2, moves its cursor
to 2, and never sees 1 when A commits. So each event also records its writing transaction
(`outbox.event.xact_id`, default `pg_current_xact_id()`, the top-level id even inside a savepoint), and the
reader takes only events whose transaction is older than the oldest one still in flight:

    where xact_id < pg_snapshot_xmin(pg_current_snapshot())

Every transaction below that horizon has finished, so its events are all visible or never will be (rolled
back), and every event committed later belongs to a transaction at or above the horizon. Reading in
(xact_id, event_id) order with the cursor on that pair therefore never skips: whatever commits after a read
sorts after the cursor. The price is latency, not loss: a long transaction anywhere in the cluster holds the
horizon back, and events behind it wait until it ends. We chose this over per-consumer delivery rows because
it costs one indexed column, no write per event and consumer, and a new consumer (search sync) is one row.

Delivery is at-least-once. The handler gets a batch inside the transaction that moves the cursor, so its own
writes (inbox rows) and the cursor commit together, and a crash replays at most the uncommitted batch; a
handler that writes elsewhere (mail, an HTTP index) must be idempotent itself. The cursor row is locked with
SKIP LOCKED, so two processes running one consumer take turns instead of handling a batch twice.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

import psycopg

log = logging.getLogger(__name__)
R = TypeVar("R")


@dataclass(frozen=True)
class OutboxEvent:
    event_id: int
    xact_id: int
    type: str
    payload: dict
    created_at: datetime


Handler = Callable[[psycopg.Connection, Sequence[OutboxEvent]], None]


@dataclass(frozen=True)
class ConsumerState:
    name: str
    last_xact_id: int
    last_event_id: int
    handled: int
    pending: int  # events after the cursor, committed or not yet readable
    updated_at: datetime
    last_error: str | None
    failed_at: datetime | None


def ensure_consumer(conn: psycopg.Connection, name: str) -> None:
    """Register `name` with its cursor at the beginning of the outbox; a no-op when it exists."""
    if conn.execute("select 1 from outbox.consumer where name = %s", (name,)).fetchone() is not None:
        return
    with conn.transaction():
        conn.execute("insert into outbox.consumer (name) values (%s) on conflict (name) do nothing", (name,))


def consume(conn: psycopg.Connection, name: str, handler: Handler, *, batch_size: int = 100) -> int:
    """Hand the next batch of readable events to `handler`, then move the cursor, in one transaction.

    `conn` must be in autocommit mode (a pool connection): this function owns the transaction. Returns how
    many events were handled: 0 when nothing new is readable or another process holds this consumer. A
    handler error rolls the batch back (cursor included), is recorded on the consumer row for the operator,
    and is raised again; the same batch is offered on the next call.
    """
    if not conn.autocommit:
        raise ValueError(f"consumer {name!r} needs an autocommit connection: it commits each batch itself")
    ensure_consumer(conn, name)
    try:
        with conn.transaction():
            cursor = conn.execute(
                "select last_xact_id::text as xact, last_event_id from outbox.consumer where name = %s "
                "for update skip locked",
                (name,),
            ).fetchone()
            if cursor is None:
                return 0
            cursor = _row(cursor, "xact", "last_event_id")
            events = read_after(conn, int(cursor[0]), cursor[1], limit=batch_size)
            if not events:
                return 0
            handler(conn, events)
            last = events[-1]
            conn.execute(
                """
                update outbox.consumer
                set last_xact_id = %s::text::xid8, last_event_id = %s, handled = handled + %s,
                    updated_at = now(), last_error = null, failed_at = null
                where name = %s
                """,
                (str(last.xact_id), last.event_id, len(events), name),
            )
    except Exception as exc:
        _record_failure(conn, name, exc)
        raise
    return len(events)


def consume_all(conn: psycopg.Connection, name: str, handler: Handler, *, batch_size: int = 100,
                max_batches: int = 1000) -> int:
    """Consume batch after batch until nothing readable is left (or `max_batches`); returns events handled."""
    total = 0
    for _ in range(max_batches):
        handled = consume(conn, name, handler, batch_size=batch_size)
        total += handled
        if handled < batch_size:
            break
    return total


def read_after(conn: psycopg.Connection, xact_id: int, event_id: int, *, limit: int) -> list[OutboxEvent]:
    """Events after (xact_id, event_id) whose writing transaction is below the horizon, in reading order."""
    rows = conn.execute(
        """
        with horizon as (select pg_snapshot_xmin(pg_current_snapshot()) as xmin)
        select e.event_id, e.xact_id::text as xact, e.type, e.payload, e.created_at
        from outbox.event e, horizon h
        where (e.xact_id, e.event_id) > (%s::text::xid8, %s)
          and e.xact_id < h.xmin
        order by e.xact_id, e.event_id
        limit %s
        """,
        (str(xact_id), event_id, limit),
    ).fetchall()
    out = []
    for row in rows:
        event_id_, xact, type_, payload, created_at = _row(row, "event_id", "xact", "type", "payload", "created_at")
        out.append(OutboxEvent(event_id=event_id_, xact_id=int(xact), type=type_, payload=payload,
                               created_at=created_at))
    return out


def consumer_state(conn: psycopg.Connection, name: str) -> ConsumerState | None:
    """Where `name` stands, for an operator: its cursor, what is left after it, its last failure."""
    row = conn.execute(
        """
        select c.name, c.last_xact_id::text as xact, c.last_event_id, c.handled, c.updated_at, c.last_error,
               c.failed_at,
               (select count(*) from outbox.event e
                where (e.xact_id, e.event_id) > (c.last_xact_id, c.last_event_id)) as pending
        from outbox.consumer c where c.name = %s
        """,
        (name,),
    ).fetchone()
    if row is None:
        return None
    name_, xact, event_id, handled, updated_at, last_error, failed_at, pending = _row(
        row, "name", "xact", "last_event_id", "handled", "updated_at", "last_error", "failed_at", "pending")
    return ConsumerState(name=name_, last_xact_id=int(xact), last_event_id=event_id, handled=handled,
                         pending=pending, updated_at=updated_at, last_error=last_error, failed_at=failed_at)


def _record_failure(conn: psycopg.Connection, name: str, exc: Exception) -> None:
    reason = f"{type(exc).__name__}: {exc}"[:2000]
    try:
        with conn.transaction():
            conn.execute(
                "update outbox.consumer set last_error = %s, failed_at = now() where name = %s", (reason, name)
            )
    except psycopg.Error:  # the database itself is what failed; the original error is the one to raise
        log.warning("could not record consumer %s's failure (%s)", name, reason)


def _row(row, *names):
    if isinstance(row, dict):
        return tuple(row[n] for n in names)
    return tuple(row)


def run_rounds(round_once: Callable[[], R], *, name: str, idle: R, once: bool = False, interval_s: float = 2.0,
               max_pause_s: float = 60.0, stop: threading.Event | None = None,
               report: Callable[[R], None] | None = None) -> R:
    """A consumer worker's loop: rounds until `stop` is set (or one with `once`); returns the last round's report.

    A round that fails (the database away, a handler error) is logged and retried after a pause that doubles up
    to `max_pause_s`; with `once` the error is raised, so a scheduler sees it. `report` hears every round that
    did something (`.anything`), and the one round of `once`.
    """
    stop = stop or threading.Event()
    pause, last = interval_s, idle
    while True:
        try:
            last = round_once()
            pause = interval_s
            if report is not None and (last.anything or once):
                report(last)
        except Exception as exc:  # noqa: BLE001 - a worker outlives a bad round; `once` lets the caller see it
            if once:
                raise
            pause = min(max(pause * 2, 1.0), max_pause_s)
            log.warning("%s round failed (%s: %s); next try in %.0f s", name, type(exc).__name__,
                        " ".join(str(exc).split()), pause)
        if once or stop.wait(pause):
            return last
