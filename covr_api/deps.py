"""What routes depend on: a database connection, the signed-in member, the settings, an idempotency key."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

import psycopg
from fastapi import Depends, Header, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from covr_core.contact import accounts
from covr_core.platform.settings import Settings
from covr_core.shared.errors import Unauthorized

_bearer = HTTPBearer(auto_error=False, description="An access token from POST /v1/auth/login")


def _connection(request: Request) -> Iterator[psycopg.Connection]:
    with request.app.state.db.connection() as conn:
        yield conn


def _settings(request: Request) -> Settings:
    return request.app.state.settings


def _current_user(
    request: Request,
    conn: Annotated[psycopg.Connection, Depends(_connection)],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> accounts.Principal:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise Unauthorized("this route needs a bearer access token (POST /v1/auth/login)")
    return accounts.authenticate(conn, access_token=credentials.credentials, secret=request.app.state.token_secret)


DbDep = Annotated[psycopg.Connection, Depends(_connection)]
SettingsDep = Annotated[Settings, Depends(_settings)]
CurrentUser = Annotated[accounts.Principal, Depends(_current_user)]
IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        description="Makes the POST safe to retry: a replay with the same key returns the first response.",
    ),
]


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"
