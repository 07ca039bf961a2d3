"""Real services for the whole session: one embedded PostgreSQL, one migrated template database.

Each test that asks for `db_url` gets its own database cloned from the template, so tests are
isolated even when the code under test commits (Dagster runs, the CLI, the API).
"""

from __future__ import annotations

import os
from pathlib import Path

import psycopg
import pytest
from moto.server import ThreadedMotoServer
from psycopg.rows import dict_row

from covr_core.platform import migrations
from covr_core.platform.db import start_embedded
from covr_core.platform.settings import Settings
from tests.databases import scratch_database, with_database

os.environ.setdefault("OMP_THREAD_LIMIT", "1")

TEMPLATE = "covr_template"


@pytest.fixture(scope="session")
def pg_server(tmp_path_factory):
    """One real PostgreSQL 16 (pgserver, with pgvector) for the test session."""
    server = start_embedded(tmp_path_factory.mktemp("pg") / "data")
    yield server
    server.cleanup()


@pytest.fixture(scope="session")
def admin_url(pg_server) -> str:
    return pg_server.get_uri()


@pytest.fixture(scope="session")
def template_db(admin_url) -> str:
    """A database with every migration applied once; tests clone it."""
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f"drop database if exists {TEMPLATE}")
        conn.execute(f"create database {TEMPLATE}")
    with psycopg.connect(with_database(admin_url, TEMPLATE)) as conn:
        migrations.migrate(conn)
    return TEMPLATE


@pytest.fixture
def empty_db_url(admin_url) -> str:
    """A brand-new database with nothing applied."""
    with scratch_database(admin_url, "covr_empty") as url:
        yield url


@pytest.fixture
def db_url(admin_url, template_db) -> str:
    """A migrated database of this test's own."""
    with scratch_database(admin_url, "covr_test", template_db) as url:
        yield url


@pytest.fixture
def conn(db_url):
    with psycopg.connect(db_url, row_factory=dict_row) as connection:
        yield connection


@pytest.fixture
def settings(tmp_path: Path, db_url: str) -> Settings:
    """Settings as an operator would give them: a real database, objects in a temp folder."""
    return Settings(home=tmp_path / "covr", database_url=db_url)


class SmtpSink:
    """What a real SMTP server on loopback accepted; `before_accept(n)` may answer the n-th message offered
    (accepted or not) with a reply of its own instead."""

    def __init__(self, host: str, port: int):
        import threading

        self.host, self.port = host, port
        self.messages: list = []
        self.offered = 0
        self.before_accept = None  # callable(n) -> an SMTP reply such as "451 try later", or None to accept
        self.lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope):
        from email import message_from_bytes, policy

        with self.lock:
            self.offered += 1
            n = self.offered
            verdict = self.before_accept(n) if self.before_accept else None
            if verdict:
                return verdict
            self.messages.append(message_from_bytes(envelope.content, policy=policy.default))
        return "250 Message accepted for delivery"

    def message_ids(self) -> list[str]:
        with self.lock:
            return [m["Message-ID"] for m in self.messages]


@pytest.fixture
def smtp_server():
    """A real SMTP server (aiosmtpd) on a free loopback port, recording every message it accepts."""
    import socket

    from aiosmtpd.controller import Controller

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    sink = SmtpSink("127.0.0.1", port)
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield sink
    finally:
        controller.stop()


@pytest.fixture(scope="module")
def s3_endpoint():
    """A real S3 API (moto's server) on loopback. Port 0: the OS picks a free port and the server reports it,
    so there is no probe-then-bind race."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def covr(db_url, tmp_path, monkeypatch, capsys):
    """Run `covr ...` in-process on the test's database; returns (exit code, stdout, stderr), never a traceback."""
    from covr_pipelines.cli import main

    monkeypatch.setenv("DATABASE_URL", db_url)
    monkeypatch.setenv("COVR_HOME", str(tmp_path / "home"))

    def run(*args: str) -> tuple[int, str, str]:
        code = main(list(args))
        out, err = capsys.readouterr()
        assert "Traceback" not in out + err
        return code, out, err

    return run
