"""The API over real HTTP: a uvicorn server in a thread over this test's own database, and signed-up members."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import httpx
import psycopg
import pytest
from psycopg.rows import dict_row

from covr_core.platform.settings import Settings
from tests.api.server import PASSWORD, serve


@dataclass
class LiveApi:
    base_url: str
    db_url: str
    settings: Settings

    def client(self, token: str | None = None, **kwargs) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.base_url, headers=headers, timeout=30.0, **kwargs)

    def sql(self, query: str, params=None) -> list[dict]:
        with psycopg.connect(self.db_url, row_factory=dict_row, autocommit=True) as conn:
            cur = conn.execute(query, params)
            return cur.fetchall() if cur.description else []


@dataclass
class Member:
    handle: str
    user_id: str
    access_token: str
    refresh_token: str
    client: httpx.Client


@pytest.fixture
def api_settings(tmp_path: Path, db_url: str) -> Settings:
    return Settings(home=tmp_path / "covr", database_url=db_url)


@pytest.fixture
def api(api_settings: Settings):
    base_url, stop = serve(api_settings)
    try:
        yield LiveApi(base_url, api_settings.database_url, api_settings)
    finally:
        stop()


@pytest.fixture
def member(api: LiveApi):
    """`member("alice")`: registered and logged in over HTTP."""
    clients: list[httpx.Client] = []

    @functools.cache
    def token_policy():
        # The policy the served app signs with (same settings, same secret file): built once, not per member.
        from covr_api.main import create_app

        return create_app(api.settings).state.token_policy

    def make(handle: str, *, email: str | None = None, display_name: str | None = None,
             quick: bool = False) -> Member:
        if quick:
            return _quick(handle, display_name)
        with api.client() as anon:
            r = anon.post("/v1/auth/register", json={
                "handle": handle, "display_name": display_name or handle.title(), "password": PASSWORD,
                **({"email": email} if email else {}),
            })
            assert r.status_code == 201, r.text
            r = anon.post("/v1/auth/login", json={"handle": handle, "password": PASSWORD})
            assert r.status_code == 200, r.text
        tokens = r.json()
        client = api.client(tokens["access_token"])
        clients.append(client)
        return Member(handle, tokens["user_id"], tokens["access_token"], tokens["refresh_token"], client)

    def _quick(handle: str, display_name: str | None) -> Member:
        # For tests that need dozens of members: argon2 costs ~100 ms a hash here, and what such tests exercise
        # is not sign-up. The member is created and given a session directly, as login would.
        from covr_core.contact import accounts

        with psycopg.connect(api.db_url, row_factory=dict_row, autocommit=True) as conn:
            user_id = accounts.ensure_user(conn, handle, display_name or handle.title())
            tokens = accounts.open_session(conn, user_id, token_policy())
        client = api.client(tokens.access_token)
        clients.append(client)
        return Member(handle, user_id, tokens.access_token, tokens.refresh_token, client)

    yield make
    for c in clients:
        c.close()


@pytest.fixture
def befriend(api: LiveApi):
    """Make two members accepted contacts, directly in SQL (set-up only; the contacts API has its own tests)."""

    def link(a: Member, b: Member) -> None:
        api.sql(
            "insert into contact.link (user_id, contact_id, status) values (%s, %s, 'accepted')",
            (a.user_id, b.user_id),
        )

    return link


@pytest.fixture
def db_state(api: LiveApi):
    """A fingerprint of every row of every table in every schema: equal before and after means nothing changed."""

    def fingerprint() -> dict[str, tuple[int, str]]:
        with psycopg.connect(api.db_url, autocommit=True) as conn:
            tables = conn.execute(
                """
                select quote_ident(table_schema) || '.' || quote_ident(table_name)
                from information_schema.tables
                where table_type = 'BASE TABLE' and table_schema not in ('pg_catalog', 'information_schema')
                order by 1
                """
            ).fetchall()
            return {
                name: conn.execute(
                    f"select count(*), md5(coalesce(string_agg(t::text, '|' order by t::text), '')) from {name} t"
                ).fetchone()
                for (name,) in tables
            }

    return fingerprint
