"""Bench the transactional API under 32 concurrent clients, against a one-`select 1` baseline; run by hand.

    .venv/bin/python bench/api.py                    # 32 clients, 20 rounds each, 2 API workers
    .venv/bin/python bench/api.py --clients 8 --rounds 5 --workers 1

It starts `covr api` (the real entry point, uvicorn) on the embedded PostgreSQL of a throwaway COVR_HOME and
drives it over HTTP, one phase per route so each route's figures are its own: create a request, accept it,
complete the hand-over, list copies, read notifications. Each client is a pair of contacts (a holder with one
fresh copy per round, and a requester). Members and copies are set up directly in the database: sign-up and
ingest are not what is measured. Before the reads, `covr notifications worker --once` turns the outbox into
inboxes, and the bench counts every notification against the events: none lost, none doubled.

Baseline in the same run: `GET /v1/health`, one `select 1` through the same app, pool and workers.
Targets (2 cores): p99 <= 50 ms for every route at 32 clients; write throughput >= 40% of the baseline's.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from covr_core.contact import accounts  # noqa: E402
from covr_core.platform.db import Database  # noqa: E402
from covr_core.platform.settings import Settings  # noqa: E402

P99_TARGET_MS = 50.0
WRITE_RATIO_TARGET = 0.40


@dataclass
class Client:
    holder_token: str
    requester_token: str
    copies: list[str]
    request_ids: list[str] = field(default_factory=list)
    handover_ids: list[str] = field(default_factory=list)


@dataclass
class Phase:
    name: str
    latencies_ms: list[float]
    wall_s: float
    errors: int

    @property
    def rps(self) -> float:
        return len(self.latencies_ms) / self.wall_s

    def pct(self, q: float) -> float:
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _set_up(db: Database, settings: Settings, clients: int, rounds: int) -> list[Client]:
    policy = accounts.TokenPolicy(
        secret=accounts.signing_secret(settings.token_secret, settings.home / "token-secret"),
        access_ttl=timedelta(hours=2),
        refresh_ttl=timedelta(days=1),
    )
    out = []
    with db.connection() as conn:
        book_id = conn.execute(
            "insert into catalog.book (title, authors) values ('The Benchmark Book', '{A. Author}') returning book_id"
        ).fetchone()["book_id"]
        for i in range(clients):
            holder = accounts.ensure_user(conn, f"holder{i:02d}", f"Holder {i}")
            requester = accounts.ensure_user(conn, f"reader{i:02d}", f"Reader {i}")
            conn.execute("insert into contact.link (user_id, contact_id, status) values (%s, %s, 'accepted')",
                         (holder, requester))
            copies = [
                r["copy_id"] for r in conn.execute(
                    "insert into catalog.copy (book_id, owner_id, current_holder_id) "
                    "select %s, %s, %s from generate_series(1, %s) returning copy_id",
                    (book_id, holder, holder, rounds),
                ).fetchall()
            ]
            out.append(Client(
                holder_token=accounts.open_session(conn, holder, policy).access_token,
                requester_token=accounts.open_session(conn, requester, policy).access_token,
                copies=[str(c) for c in copies],
            ))
    return out


async def _phase(name: str, base_url: str, clients: list[Client], rounds: int, call) -> Phase:
    """Every client runs `call(http, client, round)` `rounds` times in sequence; clients run concurrently."""
    latencies: list[float] = []
    errors = 0
    limits = httpx.Limits(max_connections=len(clients) * 2, max_keepalive_connections=len(clients) * 2)
    async with httpx.AsyncClient(base_url=base_url, timeout=60, limits=limits) as http:

        async def one(client: Client) -> None:
            nonlocal errors
            for r in range(rounds):
                t0 = time.perf_counter()
                ok = await call(http, client, r)
                latencies.append((time.perf_counter() - t0) * 1000)
                errors += 0 if ok else 1

        t0 = time.perf_counter()
        await asyncio.gather(*(one(c) for c in clients))
        wall = time.perf_counter() - t0
    return Phase(name, latencies, wall, errors)


def _auth(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


async def health(http, c: Client, r: int) -> bool:
    return (await http.get("/v1/health")).status_code == 200


async def create_request(http, c: Client, r: int) -> bool:
    resp = await http.post("/v1/requests", json={"copy_id": c.copies[r], "kind": "borrow"},
                           headers=_auth(c.requester_token) | {"Idempotency-Key": f"bench-{c.copies[r]}"})
    if resp.status_code == 201:
        c.request_ids.append(resp.json()["request_id"])
    return resp.status_code == 201


async def accept(http, c: Client, r: int) -> bool:
    resp = await http.post(f"/v1/requests/{c.request_ids[r]}/accept", headers=_auth(c.holder_token))
    if resp.status_code == 200:
        c.handover_ids.append(resp.json()["handover_id"])
    return resp.status_code == 200


async def complete(http, c: Client, r: int) -> bool:
    resp = await http.post(f"/v1/handovers/{c.handover_ids[r]}/complete", json={"condition_rating": 8},
                           headers=_auth(c.requester_token))
    return resp.status_code == 200


async def list_copies(http, c: Client, r: int) -> bool:
    return (await http.get("/v1/copies", params={"limit": 20}, headers=_auth(c.requester_token))).status_code == 200


async def read_notifications(http, c: Client, r: int) -> bool:
    resp = await http.get("/v1/notifications", params={"limit": 20}, headers=_auth(c.holder_token))
    return resp.status_code == 200


def _notification_audit(db: Database) -> tuple[int, int, int]:
    """(expected, present, duplicated) notifications for the events this run wrote."""
    with db.connection() as conn:
        expected = conn.execute(
            """
            select coalesce(sum(case type when 'ExchangeCompleted' then 2 else 1 end), 0) as n
            from outbox.event where type in ('RequestCreated', 'ExchangeAccepted', 'ExchangeCompleted')
            """
        ).fetchone()["n"]
        present = conn.execute(
            """
            select count(*) as n from notification.notification n join outbox.event e using (event_id)
            where e.type in ('RequestCreated', 'ExchangeAccepted', 'ExchangeCompleted')
            """
        ).fetchone()["n"]
        doubled = conn.execute(
            """
            select count(*) as n from (
                select event_id, recipient_id from notification.notification group by 1, 2 having count(*) > 1
            ) d
            """
        ).fetchone()["n"]
    return int(expected), int(present), int(doubled)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=20, help="requests per client and phase")
    parser.add_argument("--workers", type=int, default=2, help="API worker processes")
    args = parser.parse_args()

    home = Path(tempfile.mkdtemp(prefix="covr-bench-api-"))
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "DAGSTER_HOME")}
    env.update(COVR_HOME=str(home), COVR_DB_POOL_MAX="16")
    settings = Settings(home=home)
    db = Database.from_settings(settings)
    port = _free_port()
    api_log = (home / "api.log").open("w")
    api = subprocess.Popen(
        [sys.executable, "-m", "covr_pipelines.cli", "api", "--port", str(port), "--workers", str(args.workers),
         "--no-access-log"],
        env=env, stdout=api_log, stderr=subprocess.STDOUT, text=True,
    )
    base_url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{base_url}/v1/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if api.poll() is not None or time.monotonic() > deadline:
                print(f"the API did not start; see {home / 'api.log'}", file=sys.stderr)
                return 1
            time.sleep(0.2)
        clients = _set_up(db, settings, args.clients, args.rounds)
        print(f"covr api: {args.workers} worker(s), {args.clients} clients x {args.rounds} requests per phase, "
              f"embedded PostgreSQL in {home}")

        run = lambda name, call: asyncio.run(_phase(name, base_url, clients, args.rounds, call))  # noqa: E731
        run("warm-up", health)
        baseline = run("GET /v1/health (select 1)", health)
        phases = [
            run("POST /v1/requests", create_request),
            run("POST /v1/requests/{id}/accept", accept),
            run("POST /v1/handovers/{id}/complete", complete),
            run("GET /v1/copies", list_copies),
        ]
        worker = subprocess.run([sys.executable, "-m", "covr_pipelines.cli", "notifications", "worker", "--once"],
                                env=env, capture_output=True, text=True, timeout=600)
        if worker.returncode != 0:
            print(f"notifications worker failed: {worker.stderr.strip()}", file=sys.stderr)
        phases.append(run("GET /v1/notifications", read_notifications))
        expected, present, doubled = _notification_audit(db)
    finally:
        api.send_signal(signal.SIGTERM)
        try:
            api.wait(timeout=60)
        except subprocess.TimeoutExpired:
            api.kill()
        db.close()

    writes = [p for p in phases if p.name.startswith("POST")]
    print()
    print(f"{'route':38} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7} {'vs baseline':>12}")
    for p in [baseline, *phases]:
        print(f"{p.name:38} {p.rps:8.1f} {p.pct(0.50):8.1f} {p.pct(0.99):8.1f} {p.errors:7d} "
              f"{p.rps / baseline.rps:11.0%}")
    write_rps = statistics.fmean(p.rps for p in writes)
    worst_p99 = max(p.pct(0.99) for p in phases)
    print()
    print(f"write routes: {write_rps:.1f} req/s on average, {write_rps / baseline.rps:.0%} of the baseline's "
          f"{baseline.rps:.1f} (target >= {WRITE_RATIO_TARGET:.0%})")
    print(f"worst p99: {worst_p99:.1f} ms (target <= {P99_TARGET_MS:.0f} ms)")
    print(f"notifications: {present} of {expected} expected, {doubled} duplicated "
          f"(target: none lost, none duplicated)")
    ok = (write_rps / baseline.rps >= WRITE_RATIO_TARGET and worst_p99 <= P99_TARGET_MS
          and present == expected and doubled == 0 and not any(p.errors for p in phases))
    print("targets met" if ok else "targets NOT met")
    return 0


if __name__ == "__main__":
    sys.exit(main())
