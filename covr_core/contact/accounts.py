"""Accounts: registration, login with throttling, sessions with revocable refresh tokens, and claim codes.

A member ingest created (`covr ingest --as alice`) has no password. An operator issues a one-time claim
code (`covr users claim-code alice`), hands it to the member, and the member sets a password with it
(`POST /v1/auth/claim`). From then on the account is like any other.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import psycopg
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from covr_core.contact._tokens import (
    AccessClaims,
    issue_access_token,
    load_or_create_secret,
    new_refresh_token,
    read_access_token,
    token_hash,
)
from covr_core.shared.ids import is_uuid
from covr_core.shared.errors import Conflict, InvalidInput, RateLimited, Unauthorized
from covr_core.shared.events import MemberRenamed
from covr_core.shared.outbox import append_event

HANDLE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,62}$")
MIN_PASSWORD_CHARS = 10
MAX_PASSWORD_CHARS = 1024
CLAIM_CODE_TTL = timedelta(days=7)

_hasher = PasswordHasher()
# Verified against when the handle is unknown, so a miss costs as much time as a wrong password.
_DUMMY_HASH = _hasher.hash(secrets.token_hex(16))


class InvalidHandle(InvalidInput):
    code = "invalid_handle"


@dataclass(frozen=True)
class Principal:
    """The member a request acts for, from a valid access token of a live session."""

    user_id: str
    handle: str
    session_id: str


@dataclass(frozen=True)
class TokenPolicy:
    secret: bytes
    access_ttl: timedelta
    refresh_ttl: timedelta


@dataclass(frozen=True)
class LoginPolicy:
    max_failures_per_handle: int
    max_failures_per_address: int
    window: timedelta


@dataclass(frozen=True)
class Tokens:
    access_token: str
    refresh_token: str
    expires_in: int
    user_id: str


def signing_secret(configured, generated_at: Path) -> bytes:
    """The access-token signing key: the configured secret (a SecretStr), else one generated once at `generated_at`."""
    if configured is not None:
        return configured.get_secret_value().encode()
    return load_or_create_secret(generated_at)


def normalise_handle(raw: str) -> str:
    handle = re.sub(r"\s+", "-", raw.strip().lower())
    if not HANDLE.match(handle):
        raise InvalidHandle(
            f"user handle {raw!r} is not valid: use 1-63 lower-case letters, digits, '.', '_' or '-', "
            f"starting with a letter or digit"
        )
    return handle


def ensure_user(conn: psycopg.Connection, handle: str, display_name: str | None = None) -> str:
    """The id of the member with this handle, created (without a password, claimable) on first use."""
    with conn.transaction():
        row = conn.execute(
            """
            insert into contact.user (handle, display_name) values (%s, %s)
            on conflict (handle) do update set handle = excluded.handle
            returning user_id
            """,
            (handle, display_name or handle),
        ).fetchone()
    return str(row["user_id"])


def user_exists(conn: psycopg.Connection, user_id: str) -> bool:
    """Whether `user_id` names a user; False for anything that is not a uuid, so a stray key is skipped, not a crash."""
    if not is_uuid(user_id):
        return False
    return conn.execute("select 1 from contact.user where user_id = %s", (user_id,)).fetchone() is not None


def _check_password(password: str) -> None:
    if not MIN_PASSWORD_CHARS <= len(password) <= MAX_PASSWORD_CHARS:
        raise InvalidInput(f"a password needs {MIN_PASSWORD_CHARS}-{MAX_PASSWORD_CHARS} characters")


def register(
    conn: psycopg.Connection, *, handle: str, display_name: str, password: str, email: str | None = None
) -> dict:
    handle = normalise_handle(handle)
    _check_password(password)
    hashed = _hasher.hash(password)  # before the transaction: hashing is deliberately slow
    with conn.transaction():
        taken = conn.execute(
            "select handle, email from contact.user where handle = %s or (email is not null and email = %s)",
            (handle, email),
        ).fetchone()
        if taken is not None:
            what = f"handle {handle!r}" if taken["handle"] == handle else f"e-mail {email!r}"
            raise Conflict(f"{what} is already registered; log in, or claim the account if ingest created it")
        row = conn.execute(
            """
            insert into contact.user (handle, display_name, email, password_hash, claimed_at)
            values (%s, %s, %s, %s, now())
            returning user_id, handle, display_name, email, created_at
            """,
            (handle, display_name, email, hashed),
        ).fetchone()
    return row


def _throttle(conn: psycopg.Connection, handle: str, address: str, policy: LoginPolicy) -> None:
    row = conn.execute(
        """
        select
            count(*) filter (where handle = %(handle)s) as by_handle,
            count(*) filter (where address = %(address)s) as by_address
        from contact.login_attempt
        where not is_success and attempted_at > now() - %(window)s
          and (handle = %(handle)s or address = %(address)s)
        """,
        {"handle": handle, "address": address, "window": policy.window},
    ).fetchone()
    retry = int(policy.window.total_seconds())
    if row["by_handle"] >= policy.max_failures_per_handle:
        raise RateLimited(f"too many failed logins for {handle!r}; try again later", retry_after=retry)
    if row["by_address"] >= policy.max_failures_per_address:
        raise RateLimited("too many failed logins from this address; try again later", retry_after=retry)


def _record_attempt(conn: psycopg.Connection, handle: str, address: str, ok: bool) -> None:
    with conn.transaction():
        conn.execute(
            "insert into contact.login_attempt (handle, address, is_success) values (%s, %s, %s)",
            (handle, address, ok),
        )


def open_session(conn: psycopg.Connection, user_id: str, tokens: TokenPolicy) -> Tokens:
    """A new session for `user_id` and its first token pair (login, once the password checked out)."""
    refresh = new_refresh_token()
    with conn.transaction():
        row = conn.execute(
            "insert into contact.session (user_id, refresh_hash, expires_at) values (%s, %s, now() + %s) "
            "returning session_id",
            (user_id, token_hash(refresh), tokens.refresh_ttl),
        ).fetchone()
    access = issue_access_token(tokens.secret, AccessClaims(user_id, str(row["session_id"])), tokens.access_ttl)
    return Tokens(access, refresh, int(tokens.access_ttl.total_seconds()), user_id)


def login(
    conn: psycopg.Connection, *, handle: str, password: str, address: str, tokens: TokenPolicy, limits: LoginPolicy
) -> Tokens:
    """Tokens for a right password. Failures count per handle and per address; past the limit, 429."""
    handle = handle.strip().lower()
    _throttle(conn, handle, address, limits)
    user = conn.execute(
        "select user_id, password_hash from contact.user where handle = %s", (handle,)
    ).fetchone()
    try:
        _hasher.verify(user["password_hash"] if user and user["password_hash"] else _DUMMY_HASH, password)
        ok = user is not None and user["password_hash"] is not None
    except (VerificationError, InvalidHashError):
        ok = False
    _record_attempt(conn, handle, address, ok)
    if not ok:
        raise Unauthorized("wrong handle or password")
    return open_session(conn, str(user["user_id"]), tokens)


def refresh(conn: psycopg.Connection, *, refresh_token: str, tokens: TokenPolicy) -> Tokens:
    """A new token pair for a live session; the old refresh token stops working.

    A refresh token presented again after it was rotated means it leaked: the session is revoked.
    """
    new_refresh = new_refresh_token()
    old_hash = token_hash(refresh_token)
    with conn.transaction():
        row = conn.execute(
            """
            update contact.session set refresh_hash = %s, refreshed_at = now()
            where refresh_hash = %s and revoked_at is null and expires_at > now()
            returning session_id, user_id
            """,
            (token_hash(new_refresh), old_hash),
        ).fetchone()
    if row is None:
        raise Unauthorized("the refresh token is not valid, expired or revoked; log in again")
    claims = AccessClaims(str(row["user_id"]), str(row["session_id"]))
    access = issue_access_token(tokens.secret, claims, tokens.access_ttl)
    return Tokens(access, new_refresh, int(tokens.access_ttl.total_seconds()), claims.user_id)


def logout(conn: psycopg.Connection, principal: Principal) -> None:
    """Revoke the session: its refresh token and every access token issued for it stop working now."""
    with conn.transaction():
        conn.execute(
            "update contact.session set revoked_at = now(), revoked_why = 'logout' "
            "where session_id = %s and revoked_at is null",
            (principal.session_id,),
        )


def authenticate(conn: psycopg.Connection, *, access_token: str, secret: bytes) -> Principal:
    claims = read_access_token(secret, access_token)
    row = conn.execute(
        """
        select u.user_id, u.handle from contact.session s join contact.user u using (user_id)
        where s.session_id = %s and s.user_id = %s and s.revoked_at is null and s.expires_at > now()
        """,
        (claims.session_id, claims.user_id),
    ).fetchone()
    if row is None:
        raise Unauthorized("the session has ended (logged out or revoked); log in again")
    return Principal(user_id=str(row["user_id"]), handle=row["handle"], session_id=claims.session_id)


def issue_claim_code(conn: psycopg.Connection, handle: str) -> str:
    """A one-time code with which the member `handle` (created by ingest, no password yet) sets a password."""
    handle = normalise_handle(handle)
    code = "-".join(secrets.token_hex(2) for _ in range(4))
    with conn.transaction():
        user = conn.execute(
            "select user_id, password_hash from contact.user where handle = %s for update", (handle,)
        ).fetchone()
        if user is None:
            raise InvalidInput(f"no member has the handle {handle!r}")
        if user["password_hash"] is not None:
            raise Conflict(f"member {handle!r} has already claimed the account")
        conn.execute(
            """
            insert into contact.claim_code (user_id, code_hash, expires_at) values (%s, %s, now() + %s)
            on conflict (user_id) do update
                set code_hash = excluded.code_hash, created_at = now(), expires_at = excluded.expires_at, used_at = null
            """,
            (user["user_id"], token_hash(code), CLAIM_CODE_TTL),
        )
    return code


def claim(
    conn: psycopg.Connection, *, handle: str, code: str, password: str, email: str | None, display_name: str | None
) -> dict:
    """Set the first password of an ingest-created member with the operator's one-time code."""
    handle = normalise_handle(handle)
    _check_password(password)
    hashed = _hasher.hash(password)
    with conn.transaction():
        row = conn.execute(
            """
            update contact.claim_code c set used_at = now()
            from contact.user u
            where c.user_id = u.user_id and u.handle = %s and c.code_hash = %s
              and c.used_at is null and c.expires_at > now() and u.password_hash is null
            returning u.user_id
            """,
            (handle, token_hash(code.strip().lower())),
        ).fetchone()
        if row is None:
            raise Unauthorized(f"the claim code for {handle!r} is wrong, used or expired; ask the operator for a new one")
        if email is not None and conn.execute(
            "select 1 from contact.user where email = %s and user_id <> %s", (email, row["user_id"])
        ).fetchone():
            raise Conflict(f"e-mail {email!r} is already registered")
        before = conn.execute("select display_name from contact.user where user_id = %s", (row["user_id"],)).fetchone()
        user = conn.execute(
            """
            update contact.user set password_hash = %s, claimed_at = now(),
                   email = coalesce(%s, email), display_name = coalesce(%s, display_name)
            where user_id = %s
            returning user_id, handle, display_name, email, created_at
            """,
            (hashed, email, display_name, row["user_id"]),
        ).fetchone()
        if user["display_name"] != before["display_name"]:
            # Search documents name the holder of each copy.
            append_event(conn, MemberRenamed(user_id=str(user["user_id"]), display_name=user["display_name"]))
        return user


def get_user(conn: psycopg.Connection, user_id: str) -> dict:
    return conn.execute(
        "select user_id, handle, display_name, email, created_at from contact.user where user_id = %s", (user_id,)
    ).fetchone()
