"""Idempotency keys on real Postgres: one unit of work per key, replays, mismatches, expiry, concurrency."""

from __future__ import annotations

import threading

import psycopg
import pytest
from psycopg.rows import dict_row

from covr_core.contact.accounts import ensure_user
from covr_core.platform.idempotency import purge_expired, request_fingerprint, run_once
from covr_core.shared.errors import IdempotencyKeyReused, InvalidInput


@pytest.fixture
def auto(db_url):
    with psycopg.connect(db_url, row_factory=dict_row, autocommit=True) as c:
        c.execute("create table public.work_done (n serial primary key, body text)")
        yield c


def _work(conn, body):
    def work():
        row = conn.execute("insert into public.work_done (body) values (%s) returning n", (body,)).fetchone()
        return 201, {"n": row["n"]}

    return work


def test_a_replay_returns_the_first_response_and_does_no_work(auto):
    user = ensure_user(auto, "ada")
    fp = request_fingerprint("POST /v1/x", {"a": 1, "b": 2})
    first = run_once(auto, user_id=user, key="k1", fingerprint=fp, work=_work(auto, "one"))
    again = run_once(auto, user_id=user, key="k1", fingerprint=request_fingerprint("POST /v1/x", {"b": 2, "a": 1}),
                     work=_work(auto, "two"))
    assert (first.replayed, again.replayed) == (False, True)
    assert again.body == first.body and again.status_code == 201
    assert auto.execute("select count(*) as n from public.work_done").fetchone()["n"] == 1


def test_the_same_key_with_another_body_is_refused(auto):
    user = ensure_user(auto, "ada")
    run_once(auto, user_id=user, key="k", fingerprint=request_fingerprint("POST /v1/x", {"a": 1}), work=_work(auto, "1"))
    with pytest.raises(IdempotencyKeyReused, match="'k'"):
        run_once(auto, user_id=user, key="k", fingerprint=request_fingerprint("POST /v1/x", {"a": 2}),
                 work=_work(auto, "2"))
    with pytest.raises(IdempotencyKeyReused):
        run_once(auto, user_id=user, key="k", fingerprint=request_fingerprint("POST /v1/y", {"a": 1}),
                 work=_work(auto, "3"))
    assert auto.execute("select count(*) as n from public.work_done").fetchone()["n"] == 1


def test_keys_are_scoped_per_user(auto):
    ada, bob = ensure_user(auto, "ada"), ensure_user(auto, "bob")
    fp = request_fingerprint("POST /v1/x", {})
    a = run_once(auto, user_id=ada, key="same", fingerprint=fp, work=_work(auto, "a"))
    b = run_once(auto, user_id=bob, key="same", fingerprint=fp, work=_work(auto, "b"))
    assert not b.replayed and a.body != b.body


def test_a_failed_unit_of_work_leaves_the_key_free(auto):
    user = ensure_user(auto, "ada")
    fp = request_fingerprint("POST /v1/x", {})

    def boom():
        auto.execute("insert into public.work_done (body) values ('half')")
        raise InvalidInput("no")

    with pytest.raises(InvalidInput):
        run_once(auto, user_id=user, key="k", fingerprint=fp, work=boom)
    done = run_once(auto, user_id=user, key="k", fingerprint=fp, work=_work(auto, "ok"))
    assert not done.replayed
    assert [r["body"] for r in auto.execute("select body from public.work_done")] == ["ok"]


def test_an_expired_key_is_a_new_key(auto):
    user = ensure_user(auto, "ada")
    fp = request_fingerprint("POST /v1/x", {})
    run_once(auto, user_id=user, key="k", fingerprint=fp, work=_work(auto, "1"))
    auto.execute("update platform.idempotency_key set expires_at = now() - interval '1 second'")
    assert not run_once(auto, user_id=user, key="k", fingerprint=fp, work=_work(auto, "2")).replayed
    auto.execute("update platform.idempotency_key set expires_at = now() - interval '1 second'")
    assert purge_expired(auto) == 1


def test_twenty_concurrent_requests_with_one_key_do_the_work_once(db_url, auto):
    user = ensure_user(auto, "ada")
    fp = request_fingerprint("POST /v1/x", {"copy": 1})
    barrier = threading.Barrier(20)
    results, errors = [], []

    def call():
        try:
            with psycopg.connect(db_url, row_factory=dict_row, autocommit=True) as c:
                barrier.wait()
                results.append(run_once(c, user_id=user, key="race", fingerprint=fp, work=_work(c, "x")))
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=call) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert sum(not r.replayed for r in results) == 1
    assert len({r.body["n"] for r in results}) == 1
    assert auto.execute("select count(*) as n from public.work_done").fetchone()["n"] == 1


def test_keys_longer_than_the_limit_are_refused(auto):
    user = ensure_user(auto, "ada")
    with pytest.raises(InvalidInput, match="Idempotency-Key"):
        run_once(auto, user_id=user, key="k" * 256, fingerprint=request_fingerprint("r", {}), work=_work(auto, "x"))
