"""Ingest failures: an image that could not be processed now is recorded with its stage and reason, and retried."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import psycopg
from psycopg_pool import PoolTimeout

from covr_core.shared.ids import is_uuid

STAGES = ("upload", "identification", "dedup")
# Automatic retries back off 1, 4, 16, 60, 60 minutes; after that only `covr ingest --retry` tries again.
MAX_AUTOMATIC_ATTEMPTS = 5
FIRST_BACKOFF = timedelta(minutes=1)
MAX_BACKOFF = timedelta(hours=1)
REASON_LIMIT = 500


def backoff_after(attempts: int) -> timedelta | None:
    """How long to wait before the next automatic attempt, after `attempts` failed ones; None when none is left."""
    if attempts >= MAX_AUTOMATIC_ATTEMPTS:
        return None
    return min(FIRST_BACKOFF * 4 ** (attempts - 1), MAX_BACKOFF)


def is_database_outage(exc: BaseException) -> bool:
    """A fault of the system of record itself: nothing can be recorded, so the asset must fail and be re-executed.

    Errors of one statement (a bad value, a constraint) are not outages: they are that image's failure.
    """
    return isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError | PoolTimeout)


def describe_failure(stage: str, exc: BaseException) -> str:
    """One line naming the stage and the error, e.g. "identification failed: ValueError: image too small"."""
    message = " ".join(str(exc).split()) or "(no message)"
    reason = f"{stage} failed: {type(exc).__name__}: {message}"
    return reason if len(reason) <= REASON_LIMIT else reason[: REASON_LIMIT - 1] + "…"


@dataclass(frozen=True)
class Failure:
    object_key: str
    image_id: str | None
    stage: str
    reason: str
    attempts: int


def record_failure(
    conn: psycopg.Connection,
    *,
    object_key: str,
    stage: str,
    reason: str,
    run_id: str,
    image_id: str | None = None,
    uploader_id: str | None = None,
) -> Failure:
    """Record (or count again) a failure of `object_key` at `stage`, and schedule its next automatic attempt."""
    if stage not in STAGES:
        raise ValueError(f"failure stage {stage!r} is not one of {', '.join(STAGES)}")
    with conn.transaction():
        row = conn.execute(
            """
            insert into ingest.failure as f (object_key, image_id, uploader_id, stage, reason, run_id)
            values (%(key)s, %(image_id)s, %(uploader_id)s, %(stage)s, %(reason)s, %(run_id)s)
            on conflict (object_key) do update set
                image_id = coalesce(excluded.image_id, f.image_id),
                uploader_id = coalesce(excluded.uploader_id, f.uploader_id),
                stage = excluded.stage,
                reason = excluded.reason,
                run_id = excluded.run_id,
                -- A failure after a success starts counting anew.
                attempts = case when f.resolved_at is null then f.attempts + 1 else 1 end,
                first_failed_at = case when f.resolved_at is null then f.first_failed_at else now() end,
                last_failed_at = now(),
                resolved_at = null
            returning attempts
            """,
            {"key": object_key, "image_id": image_id, "uploader_id": uploader_id, "stage": stage,
             "reason": reason, "run_id": run_id},
        ).fetchone()
        attempts = _col(row, "attempts")
        wait = backoff_after(attempts)
        conn.execute(
            "update ingest.failure set next_attempt_at = now() + %s where object_key = %s",
            (wait, object_key),
        )
    return Failure(object_key, image_id, stage, reason, attempts)


def resolve_failure(conn: psycopg.Connection, object_key: str, stage: str) -> None:
    """Mark a failure at `stage` resolved; call it in the transaction that records that stage's success."""
    conn.execute(
        "update ingest.failure set resolved_at = now(), next_attempt_at = null "
        "where object_key = %s and stage = %s and resolved_at is null",
        (object_key, stage),
    )


def open_failures(conn: psycopg.Connection, *, due_only: bool = False, limit: int = 1000) -> list[dict]:
    """Unresolved failures, oldest first; with `due_only`, those whose automatic retry is due now."""
    return conn.execute(
        f"""
        select object_key, image_id, stage, reason, attempts, next_attempt_at from ingest.failure
        where resolved_at is null {"and next_attempt_at <= now()" if due_only else ""}
        order by last_failed_at, object_key
        limit %s
        """,
        (limit,),
    ).fetchall()


def failures_for(conn: psycopg.Connection, ids_or_keys: list[str]) -> tuple[list[dict], list[str]]:
    """The unresolved failures named by image id or object key, and the names that match none."""
    # Image ids in their canonical form, so an upper-case or padded id still matches; keys as given.
    canonical = {n: n.strip().lower() if is_uuid(n) else n for n in ids_or_keys}
    rows = conn.execute(
        """
        select object_key, image_id::text as image_id, stage, reason, attempts from ingest.failure
        where resolved_at is null and (object_key = any(%(names)s) or image_id::text = any(%(names)s))
        """,
        {"names": list(canonical.values())},
    ).fetchall()
    found = {r["object_key"] for r in rows} | {r["image_id"] for r in rows if r["image_id"]}
    return rows, [n for n, c in canonical.items() if c not in found]


def _col(row, name: str):
    return row[name] if isinstance(row, dict) else row[0]
