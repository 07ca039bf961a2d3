"""The search-sync consumer: outbox events become rebuilt (or deleted) documents of exactly the copies they touch.

It runs as `covr search sync` (a loop of rounds two seconds apart, so a committed change is searchable within a few
seconds; the bound is 30 s) on the generic outbox consumer, which never skips an event. Replaying is safe: a
document is always rebuilt from the SQL model as it is now, never patched from an event's payload, so an old event
applied late writes today's document. The embedded backend writes in the consumer's transaction (documents and
cursor commit together); Meilisearch is written idempotently before the cursor moves.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass

import psycopg
from psycopg.rows import dict_row

from covr_core.search.backend import SearchBackend
from covr_core.search.embedded import SYNC_LOCK_KEY
from covr_core.shared.consumer import OutboxEvent, consume_all, run_rounds

log = logging.getLogger(__name__)

CONSUMER = "search-sync"
DEFAULT_INTERVAL_S = 2.0

# Events that change who may see a copy's vectors, and the holder and status they carry.
VectorPayloads = Callable[[psycopg.Connection, Sequence[str]], int]


def affected_copies(conn: psycopg.Connection, events: Sequence[OutboxEvent]) -> list[str]:
    """The copies whose documents these events may have changed, each once."""
    copies: set[str] = set()
    images, books, members = set(), set(), set()
    for event in events:
        p = event.payload
        for key in ("copy_id", "matched_copy_id"):
            if p.get(key):
                copies.add(str(p[key]))
        if event.type == "DedupResolved" and p.get("image_id"):
            images.add(str(p["image_id"]))  # a new copy, or an image that gives a copy has_images
        elif event.type == "BookUpdated":
            books.add(str(p["book_id"]))
        elif event.type == "MemberRenamed":
            members.add(str(p["user_id"]))
    cur = conn.cursor(row_factory=dict_row)
    if images:
        copies.update(str(r["copy_id"]) for r in cur.execute(
            "select copy_id from media.image where image_id = any(%s::uuid[]) and copy_id is not null",
            (sorted(images),)))
    if books:
        copies.update(str(r["copy_id"]) for r in cur.execute(
            "select copy_id from catalog.copy where book_id = any(%s::uuid[])", (sorted(books),)))
    if members:
        copies.update(str(r["copy_id"]) for r in cur.execute(
            "select copy_id from catalog.copy where current_holder_id = any(%s::uuid[])", (sorted(members),)))
    return sorted(copies)


@dataclass(frozen=True)
class RoundReport:
    events: int = 0
    upserted: int = 0
    deleted: int = 0
    vectors: int = 0
    rebuilt: int | None = None  # documents of a first full build, when the index had never been built
    error: str | None = None
    busy: bool = False

    @property
    def anything(self) -> bool:
        return bool(self.events or self.rebuilt is not None or self.error)

    def line(self) -> str:
        if self.busy:
            return "a reindex or another sync holds the index; nothing done"
        text = (f"{self.events} event(s): {self.upserted} document(s) written, {self.deleted} deleted, "
                f"{self.vectors} vector payload(s) updated")
        if self.rebuilt is not None:
            text = f"first build: {self.rebuilt} document(s); " + text
        if self.error:
            text += f"; events not handled: {self.error}"
        return text


def run_round(
    connect: Callable[[], AbstractContextManager[psycopg.Connection]],
    backend: SearchBackend,
    *,
    vector_payloads: VectorPayloads | None = None,
    batch_size: int = 200,
) -> RoundReport:
    """Build the index once if it never was, then consume every readable event into it."""
    rebuilt = None
    if not backend.is_built():
        rebuilt = backend.reindex(connect).documents
    with connect() as conn:
        if not conn.execute("select pg_try_advisory_lock(%s) as ok", (SYNC_LOCK_KEY,)).fetchone()["ok"]:
            return RoundReport(busy=True, rebuilt=rebuilt)
        try:
            totals = {"upserted": 0, "deleted": 0, "vectors": 0}

            def handle(c: psycopg.Connection, events: Sequence[OutboxEvent]) -> None:
                copies = affected_copies(c, events)
                report = backend.apply(c, copies)
                totals["upserted"] += report.upserted
                totals["deleted"] += report.deleted
                if vector_payloads is not None and copies:
                    totals["vectors"] += vector_payloads(c, copies)

            error = None
            try:
                events = consume_all(conn, CONSUMER, handle, batch_size=batch_size)
            except psycopg.OperationalError:
                raise
            except Exception as exc:  # noqa: BLE001 - recorded on the consumer row; offered again next round
                log.exception("search-sync consumer failed")
                events, error = 0, f"{type(exc).__name__}: {' '.join(str(exc).split())}"
            return RoundReport(events=events, rebuilt=rebuilt, error=error, **totals)
        finally:
            try:
                conn.execute("select pg_advisory_unlock(%s)", (SYNC_LOCK_KEY,))
            except psycopg.Error:
                pass


def run(
    connect: Callable[[], AbstractContextManager[psycopg.Connection]],
    backend: SearchBackend,
    *,
    vector_payloads: VectorPayloads | None = None,
    once: bool = False,
    interval_s: float = DEFAULT_INTERVAL_S,
    stop: threading.Event | None = None,
    report: Callable[[RoundReport], None] | None = None,
) -> RoundReport:
    """Rounds until `stop` (or one with `once`); a failing round is retried after a growing pause of at most 30 s,
    so a change committed while the index was away is searchable soon after it is back."""
    return run_rounds(lambda: run_round(connect, backend, vector_payloads=vector_payloads), name="search-sync",
                      idle=RoundReport(), once=once, interval_s=interval_s, max_pause_s=30.0, stop=stop,
                      report=report)
