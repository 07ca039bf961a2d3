"""Idempotency keys: the first response to a POST is stored with the key and replayed for a repeat."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

import psycopg
import rfc8785
from psycopg.types.json import Jsonb

from covr_core.shared.errors import IdempotencyKeyReused, InvalidInput

KEY_TTL = timedelta(hours=24)
MAX_KEY_CHARS = 255


@dataclass(frozen=True)
class Outcome:
    status_code: int
    body: dict | list
    replayed: bool


def request_fingerprint(route: str, body: object) -> bytes:
    """sha256 over the route and the body in canonical JSON (RFC 8785), so key order does not matter."""
    return hashlib.sha256(route.encode() + b"\n" + rfc8785.dumps(body)).digest()


def run_once(
    conn: psycopg.Connection,
    *,
    user_id: str,
    key: str | None,
    fingerprint: bytes,
    work: Callable[[], tuple[int, dict | list]],
) -> Outcome:
    """Run `work` (the unit of work, returning status and JSON body) at most once per user and key.

    The key row is claimed in the same transaction as the work, so a concurrent request with the same
    key waits on the unique index until the first commits, then replays its response. A failure rolls
    the claim back with the work: only a completed response is ever replayed.
    """
    if key is None:
        with conn.transaction():
            status, body = work()
        return Outcome(status, body, replayed=False)
    if not 1 <= len(key) <= MAX_KEY_CHARS:
        raise InvalidInput(f"Idempotency-Key must be 1-{MAX_KEY_CHARS} characters, got {len(key)}")
    with conn.transaction():
        claimed = conn.execute(
            """
            insert into platform.idempotency_key (user_id, key, request_hash, expires_at)
            values (%(user)s, %(key)s, %(hash)s, now() + %(ttl)s)
            on conflict (user_id, key) do update
                set request_hash = excluded.request_hash, status_code = null, response = null,
                    created_at = now(), expires_at = excluded.expires_at
                where platform.idempotency_key.expires_at <= now()
            returning key
            """,
            {"user": user_id, "key": key, "hash": fingerprint, "ttl": KEY_TTL},
        ).fetchone()
        if claimed is None:
            first = conn.execute(
                "select request_hash, status_code, response from platform.idempotency_key "
                "where user_id = %s and key = %s",
                (user_id, key),
            ).fetchone()
            if bytes(first["request_hash"]) != fingerprint:
                raise IdempotencyKeyReused(
                    f"Idempotency-Key {key!r} was first used for a different request; use a new key for this one"
                )
            return Outcome(first["status_code"], first["response"], replayed=True)
        status, body = work()
        conn.execute(
            "update platform.idempotency_key set status_code = %s, response = %s where user_id = %s and key = %s",
            (status, Jsonb(body), user_id, key),
        )
    return Outcome(status, body, replayed=False)


def purge_expired(conn: psycopg.Connection) -> int:
    with conn.transaction():
        return conn.execute("delete from platform.idempotency_key where expires_at <= now()").rowcount
