"""Accounts over HTTP: register, login, tokens that expire and are revoked, throttled logins, claims."""

from __future__ import annotations

import subprocess
import sys
import time

from covr_core.contact.accounts import ensure_user
from tests.api.server import PASSWORD, serve


def test_register_login_and_me(api, member):
    alice = member("alice", email="alice@example.org")
    r = alice.client.get("/v1/users/me")
    assert r.status_code == 200
    assert r.json()["handle"] == "alice" and r.json()["email"] == "alice@example.org"
    assert "password_hash" not in r.text


def test_every_route_but_the_open_ones_needs_a_token(api):
    with api.client() as anon:
        assert anon.get("/v1/health").status_code == 200
        assert anon.get("/openapi.json").status_code == 200
        spec = anon.get("/openapi.json").json()
        open_routes = {"/v1/health", "/v1/auth/register", "/v1/auth/login", "/v1/auth/refresh", "/v1/auth/claim"}
        for path, ops in spec["paths"].items():
            for method in ops:
                if path in open_routes:
                    continue
                url = path.replace("{", "").replace("}", "")  # any id: the token check comes first
                r = anon.request(method.upper(), url)
                assert r.status_code == 401, f"{method.upper()} {path} answered {r.status_code} without a token"
                assert r.headers["content-type"].startswith("application/problem+json")
                assert r.json()["type"].endswith("/unauthorized")


def test_duplicate_handle_is_a_409_problem(api, member):
    member("bob")
    with api.client() as anon:
        r = anon.post("/v1/auth/register", json={"handle": "bob", "display_name": "B", "password": PASSWORD})
    assert r.status_code == 409
    assert r.json()["type"] == "https://covr.dev/problems/conflict"
    assert "bob" in r.json()["detail"]


def test_bad_registration_is_422_and_changes_nothing(api, db_state):
    before = db_state()
    with api.client() as anon:
        for body in ({"handle": "Bad Handle!", "display_name": "x", "password": PASSWORD},
                     {"handle": "short", "display_name": "x", "password": "short"},
                     {"handle": "x", "display_name": "x", "password": PASSWORD, "admin": True},
                     {"handle": "x", "display_name": "x", "password": PASSWORD, "email": "not-an-address"}):
            r = anon.post("/v1/auth/register", json=body)
            assert r.status_code == 422, body
            assert r.headers["content-type"].startswith("application/problem+json")
        r = anon.post("/v1/auth/register", content=b"{not json", headers={"content-type": "application/json"})
        assert r.status_code == 422
    assert db_state() == before


def test_wrong_password_is_401(api, member):
    member("carol")
    with api.client() as anon:
        r = anon.post("/v1/auth/login", json={"handle": "carol", "password": "wrong password!"})
        assert r.status_code == 401
        r = anon.post("/v1/auth/login", json={"handle": "nobody", "password": "wrong password!"})
        assert r.status_code == 401


def test_logout_revokes_the_session_access_and_refresh(api, member):
    dave = member("dave")
    assert dave.client.post("/v1/auth/logout").status_code == 204
    r = dave.client.get("/v1/users/me")
    assert r.status_code == 401
    with api.client() as anon:
        assert anon.post("/v1/auth/refresh", json={"refresh_token": dave.refresh_token}).status_code == 401


def test_refresh_rotates_and_a_reused_refresh_token_is_refused(api, member):
    erin = member("erin")
    with api.client() as anon:
        r = anon.post("/v1/auth/refresh", json={"refresh_token": erin.refresh_token})
        assert r.status_code == 200
        fresh = r.json()
        assert anon.post("/v1/auth/refresh", json={"refresh_token": erin.refresh_token}).status_code == 401
    with api.client(fresh["access_token"]) as c:
        assert c.get("/v1/users/me").json()["handle"] == "erin"


def test_access_tokens_expire(tmp_path, db_url):
    from covr_core.platform.settings import Settings

    settings = Settings(home=tmp_path / "covr", database_url=db_url, access_token_ttl_s=10)
    base_url, stop = serve(settings)
    try:
        import httpx

        with httpx.Client(base_url=base_url) as c:
            c.post("/v1/auth/register", json={"handle": "fay", "display_name": "Fay", "password": PASSWORD})
            token = c.post("/v1/auth/login", json={"handle": "fay", "password": PASSWORD}).json()["access_token"]
            assert c.get("/v1/users/me", headers={"Authorization": f"Bearer {token}"}).status_code == 200
            time.sleep(11)
            r = c.get("/v1/users/me", headers={"Authorization": f"Bearer {token}"})
            assert r.status_code == 401
            assert "expired" in r.json()["detail"]
            forged = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
            assert c.get("/v1/users/me", headers={"Authorization": f"Bearer {forged}"}).status_code == 401
    finally:
        stop()


def test_brute_force_is_limited_per_account(api, member):
    member("gus")
    with api.client() as anon:
        codes = [anon.post("/v1/auth/login", json={"handle": "gus", "password": f"guess number {i}"}).status_code
                 for i in range(8)]
        assert codes[:5] == [401] * 5
        assert codes[5:] == [429] * 3
        r = anon.post("/v1/auth/login", json={"handle": "gus", "password": PASSWORD})
        assert r.status_code == 429, "the right password does not unlock a throttled account early"
        assert int(r.headers["retry-after"]) > 0


def test_brute_force_is_limited_per_address(tmp_path, db_url):
    from covr_core.platform.settings import Settings

    import httpx

    settings = Settings(home=tmp_path / "covr", database_url=db_url, login_max_failures_per_address=3)
    base_url, stop = serve(settings)
    try:
        with httpx.Client(base_url=base_url) as c:
            codes = [c.post("/v1/auth/login", json={"handle": f"user{i}", "password": "whatever it is"}).status_code
                     for i in range(5)]
        assert codes == [401, 401, 401, 429, 429]
    finally:
        stop()


def test_a_member_ingest_created_claims_the_account(api, tmp_path):
    import psycopg
    from psycopg.rows import dict_row

    with psycopg.connect(api.db_url, row_factory=dict_row, autocommit=True) as conn:
        ensure_user(conn, "hal")
    env = {"DATABASE_URL": api.db_url, "COVR_HOME": str(tmp_path / "cli")}
    import os

    out = subprocess.run([sys.executable, "-m", "covr_pipelines.cli", "users", "claim-code", "hal"],
                         capture_output=True, text=True, env={**os.environ, **env}, timeout=120)
    assert out.returncode == 0, out.stderr
    code = out.stdout.split("claim code for hal: ")[1].split()[0]
    with api.client() as anon:
        assert anon.post("/v1/auth/login", json={"handle": "hal", "password": PASSWORD}).status_code == 401
        bad = anon.post("/v1/auth/claim", json={"handle": "hal", "code": "0000-0000-0000-0000", "password": PASSWORD})
        assert bad.status_code == 401
        ok = anon.post("/v1/auth/claim", json={"handle": "hal", "code": code, "password": PASSWORD,
                                               "email": "hal@example.org"})
        assert ok.status_code == 200, ok.text
        again = anon.post("/v1/auth/claim", json={"handle": "hal", "code": code, "password": PASSWORD})
        assert again.status_code == 401, "a claim code works once"
        assert anon.post("/v1/auth/login", json={"handle": "hal", "password": PASSWORD}).status_code == 200
    # registering over a claimable handle is refused: the account is claimed, not taken over
    with api.client() as anon:
        r = anon.post("/v1/auth/register", json={"handle": "hal", "display_name": "X", "password": PASSWORD})
    assert r.status_code == 409
