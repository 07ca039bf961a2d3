"""Whatever goes wrong, the client gets problem+json and never a traceback."""

from __future__ import annotations

import psycopg
from psycopg.conninfo import conninfo_to_dict

from tests.api.server import PASSWORD


def _is_problem(r, status: int, code: str) -> None:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    body = r.json()
    assert body["type"] == f"https://covr.dev/problems/{code}" and body["status"] == status
    assert "Traceback" not in r.text and 'File "' not in r.text


def test_unknown_routes_and_methods_are_problems(api, member):
    alice = member("alice")
    _is_problem(alice.client.get("/v1/nothing-here"), 404, "not_found")
    _is_problem(alice.client.put("/v1/users/me"), 405, "method_not_allowed")
    _is_problem(alice.client.get("/v1/requests/not-a-uuid"), 422, "invalid_request")
    _is_problem(alice.client.get("/v1/copies/not-a-uuid"), 404, "not_found")
    _is_problem(alice.client.post("/v1/requests", content=b"\xff\xfe", headers={"content-type": "application/json"}),
                422, "invalid_request")


def test_a_database_outage_is_a_503_problem_and_the_api_recovers(api, member, admin_url):
    alice = member("alice")
    name = conninfo_to_dict(api.db_url)["dbname"]
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f"alter database {name} allow_connections false")
        admin.execute("select pg_terminate_backend(pid) from pg_stat_activity where datname = %s", (name,))
        try:
            r = alice.client.get("/v1/users/me")
            _is_problem(r, 503, "service_unavailable")
            assert r.headers["retry-after"] == "5"
        finally:
            admin.execute(f"alter database {name} allow_connections true")
    for _ in range(3):  # the pool replaces the dead connections it hands out
        r = alice.client.get("/v1/users/me")
        if r.status_code == 200:
            break
    assert r.status_code == 200, r.text
    with api.client() as anon:
        assert anon.post("/v1/auth/login", json={"handle": "alice", "password": PASSWORD}).status_code == 200
