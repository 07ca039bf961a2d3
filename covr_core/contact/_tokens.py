"""Bearer tokens: short-lived signed access tokens, and opaque refresh tokens stored only as a hash."""

from __future__ import annotations

import hashlib
import os
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jwt

from covr_core.shared.errors import Unauthorized

ALGORITHM = "HS256"
ISSUER = "covr"


@dataclass(frozen=True)
class AccessClaims:
    user_id: str
    session_id: str


def load_or_create_secret(path: Path) -> bytes:
    """The signing secret shared by every API worker on one COVR_HOME; created once, readable by its owner only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        secret = path.read_bytes().strip()
        if len(secret) < 32:
            raise RuntimeError(f"token secret {path} is shorter than 32 bytes; delete it to have a new one made")
        return secret
    secret = secrets.token_hex(32).encode()
    with os.fdopen(fd, "wb") as out:
        out.write(secret)
    return secret


def issue_access_token(secret: bytes, claims: AccessClaims, ttl: timedelta, now: datetime | None = None) -> str:
    issued = now or datetime.now(UTC)
    payload = {"iss": ISSUER, "sub": claims.user_id, "sid": claims.session_id, "iat": issued, "exp": issued + ttl}
    return jwt.encode(payload, secret, algorithm=ALGORITHM)


def read_access_token(secret: bytes, token: str) -> AccessClaims:
    try:
        payload = jwt.decode(token, secret, algorithms=[ALGORITHM], issuer=ISSUER, options={"require": ["exp", "sub"]})
    except jwt.ExpiredSignatureError as exc:
        raise Unauthorized("the access token has expired; refresh it") from exc
    except jwt.InvalidTokenError as exc:
        raise Unauthorized("the access token is not valid") from exc
    return AccessClaims(user_id=str(payload["sub"]), session_id=str(payload.get("sid", "")))


def new_refresh_token() -> str:
    return secrets.token_urlsafe(32)


def token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()
