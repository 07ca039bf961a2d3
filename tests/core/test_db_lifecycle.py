"""The embedded server's lifecycle: every process that joins it leaves, and the last one out stops it."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import psycopg
import pytest
from fastapi.testclient import TestClient

from covr_core.platform import migrations
from covr_core.platform.db import Database, embedded_server_pid, release_embedded, start_embedded
from covr_core.platform.settings import Settings

HOLD = """
import sys, time
from covr_core.platform.db import Database
from covr_core.platform.settings import Settings
db = Database.from_settings(Settings())
print("joined", flush=True)
time.sleep(120)
"""


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Path:
    """One COVR_HOME per module: initdb runs once, each test starts from a stopped server."""
    path = tmp_path_factory.mktemp("covr-home")
    start_embedded(path / "pg").cleanup()
    return path


@pytest.fixture
def env(home) -> dict[str, str]:
    environ = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "DAGSTER_HOME")}
    environ["COVR_HOME"] = str(home)
    assert embedded_server_pid(home / "pg") is None, "a previous test left the server running"
    yield environ
    # Never leave a server behind for the next test, whatever this one did.
    subprocess.run([sys.executable, "-m", "covr_pipelines.cli", "db", "stop"], env=environ,
                   capture_output=True, timeout=60)


def _covr(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "covr_pipelines.cli", *args], env=env,
                          capture_output=True, text=True, timeout=60)


def _handles(home: Path) -> list[int]:
    return json.loads((home / "pg" / ".handle_pids.json").read_text())


def _wait_until(predicate, what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting until {what}")
        time.sleep(0.05)


def _stopped(home: Path) -> bool:
    pid_file = home / "pg" / "postmaster.pid"
    if not pid_file.exists():
        return True
    return not psutil.pid_exists(int(pid_file.read_text().split()[0]))


def _hold(env, *, code: str = HOLD) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "joined", proc.stderr.read()
    return proc


def test_the_server_stops_when_covr_db_status_exits(home, env):
    result = _covr("db", "status", env=env)

    assert result.returncode == 0, result.stderr
    assert _stopped(home)
    assert _handles(home) == []


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_cli_process_stopped_by_a_signal_releases_the_server(home, env, signum):
    """`covr db migrate` blocked on the migration lock is a real long-running CLI process."""
    holder = start_embedded(home / "pg")
    url = holder.get_uri()
    with psycopg.connect(url, autocommit=True) as lock_conn:
        lock_conn.execute("select pg_advisory_lock(%s)", (migrations.ADVISORY_LOCK_KEY,))
        cli = subprocess.Popen([sys.executable, "-m", "covr_pipelines.cli", "db", "migrate"], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        _wait_until(lambda: lock_conn.execute(
            "select count(*) as n from pg_locks where locktype = 'advisory' and not granted").fetchone()[0] == 1,
            "the CLI waits on the migration lock")
        release_embedded(holder)  # from here on only the CLI holds the server
        assert _handles(home) == [cli.pid]

        cli.send_signal(signum)
        _, stderr = cli.communicate(timeout=30)

    assert cli.returncode == 128 + signum, stderr
    assert "Traceback" not in stderr
    assert _stopped(home), stderr
    assert _handles(home) == []


def test_a_killed_process_does_not_keep_the_server_up_for_the_next_one(home, env):
    killed = _hold(env)
    killed.kill()
    killed.wait()
    assert _handles(home) == [killed.pid] and not _stopped(home)

    assert _covr("db", "status", env=env).returncode == 0

    assert _stopped(home)
    assert _handles(home) == []


def test_covr_db_stop_stops_a_server_whoever_holds_it(home, env):
    killed = _hold(env)
    killed.kill()
    killed.wait()
    alive = _hold(env)
    try:
        server_pid = embedded_server_pid(home / "pg")

        result = _covr("db", "stop", env=env)

        assert result.returncode == 0, result.stderr
        assert result.stdout.splitlines() == [
            f"stopping embedded PostgreSQL in {(home / 'pg').absolute()} (pid {server_pid}); still held by "
            f"process(es) {alive.pid}, whose connections will drop",
            "stopped",
        ]
        assert _stopped(home) and _handles(home) == []
    finally:
        alive.terminate()
        alive.wait(timeout=30)
    assert _stopped(home)


def test_covr_db_stop_says_so_when_there_is_nothing_to_stop(home, env):
    assert _covr("db", "stop", env=env).stdout.strip() == (
        f"embedded PostgreSQL in {(home / 'pg').absolute()} is not running")

    configured = _covr("db", "stop", env={**env, "DATABASE_URL": "postgresql://covr:secret@db.example:5432/covr"})

    assert configured.returncode == 0
    assert configured.stdout.strip() == "DATABASE_URL is set (db.example:5432/covr): there is no embedded server to stop"


def test_two_databases_in_one_process_share_one_handle_released_by_the_last_close(home, env):
    settings = Settings(home=home)
    first = Database.from_settings(settings)
    second = Database.from_settings(settings)
    assert _handles(home) == [os.getpid()]

    first.close()
    first.close()  # a second close releases nothing more
    with second.connection() as conn:
        assert conn.execute("select 1 as one").fetchone() == {"one": 1}

    second.close()
    assert _stopped(home) and _handles(home) == []

    third = Database.from_settings(settings)  # joining again after the stop registers again
    assert _handles(home) == [os.getpid()]
    third.close()
    assert _stopped(home)


def test_the_api_releases_the_server_when_it_shuts_down(home, env):
    from covr_api.main import create_app

    with TestClient(create_app(Settings(home=home))) as client:
        assert client.get("/v1/health").json() == {"status": "ok"}
        assert _handles(home) == [os.getpid()]

    assert _stopped(home)
    assert _handles(home) == []


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_during_covr_ingest_ends_it_cleanly_and_leaves_no_server(home, env, tmp_path, signum):
    """SIGTERM (or Ctrl-C) while the ingest job identifies a small batch: 143 (130), one line, the run marked
    as ended, and no Postgres left running. Dagster's in-process run takes both signals over while it runs."""
    import dagster as dg

    from covr_pipelines.sample_photos import SAMPLE_BOOKS
    from tests.photos import cover_photo

    for leftover in ("objects", "dagster"):  # the module shares one COVR_HOME; this test reads both folders
        shutil.rmtree(home / leftover, ignore_errors=True)
    photos = []
    for i, (title, author, isbn) in enumerate(SAMPLE_BOOKS[:3]):
        photos.append(tmp_path / f"photo{i}.jpg")
        photos[-1].write_bytes(cover_photo({"title": title, "authors": [author], "isbn13": isbn}, seed=40 + i))
    cli = subprocess.Popen([sys.executable, "-m", "covr_pipelines.cli", "ingest", "--as", "tess", *map(str, photos)],
                           env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        # The identification stage writes a normalized copy of each photo before reading it: the run is under way.
        _wait_until(lambda: any((home / "objects" / "derived" / "normalized").rglob("*.jpg")),
                    "the ingest run identifies its first photo", timeout=90)
        assert cli.poll() is None, cli.communicate()
        assert _handles(home) == [cli.pid]

        cli.send_signal(signum)
        stdout, stderr = cli.communicate(timeout=60)
    finally:
        if cli.poll() is None:
            cli.kill()
            cli.communicate()

    assert cli.returncode == 128 + signum, stderr
    assert stderr.strip().splitlines()[-1] == (
        "covr: terminated" if signum == signal.SIGTERM else "covr: interrupted"), stderr
    assert "Traceback" not in stderr and stdout == ""
    assert _stopped(home), stderr
    assert _handles(home) == []
    # The run is recorded as ended in the instance `make dagster` shows, not left STARTED for ever.
    with dg.DagsterInstance.from_config(str(home / "dagster")) as instance:
        [run] = instance.get_runs()
    assert run.status in (dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED), run.status


@pytest.mark.parametrize("workers", [1, 2])
def test_covr_api_serves_on_the_embedded_default_and_leaves_no_server_after_sigterm(home, env, workers):
    import socket

    import httpx

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "covr_pipelines.cli", "api", "--port", str(port), "--workers", str(workers)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/v1/health", timeout=2).json() == {"status": "ok"}:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read() if proc.poll() else "slow"
            time.sleep(0.2)
        for _ in range(4 * workers):  # every worker answers (and so holds the server)
            assert httpx.get(f"http://127.0.0.1:{port}/v1/health", timeout=5).status_code == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
    assert "Traceback" not in out, out
    _wait_until(lambda: _stopped(home), "the embedded server stopped after the API exited")
    assert _handles(home) == []
