"""Connections to the system of record: a configured DATABASE_URL, or embedded PostgreSQL in COVR_HOME."""

from __future__ import annotations

import logging
import subprocess
import warnings
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

log = logging.getLogger(__name__)


class DatabaseUnavailable(RuntimeError):
    """The database could not be reached or started; the message is one line meant for a person."""


def describe_target(url: str) -> str:
    """Host and database of a URL, without the password, for error messages."""
    parts = urlsplit(url)
    host = parts.hostname or "local socket"
    port = f":{parts.port}" if parts.port else ""
    database = parts.path.lstrip("/") or "postgres"
    return f"{host}{port}/{database}"


def start_embedded(pg_data_dir: Path):
    """Start (or join) the embedded PostgreSQL 16 server for this data directory.

    pgserver keeps a list of handle pids next to the data and an inter-process lock, so several
    covr processes on one COVR_HOME share one server, and the last one out stops it.
    """
    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset and falls back to /tmp, which is fine here.
        warnings.simplefilter("ignore")
        import pgserver  # imported lazily: it is only needed without DATABASE_URL

    pg_data_dir = pg_data_dir.absolute()
    if pg_data_dir.exists() and any(pg_data_dir.iterdir()) and not (pg_data_dir / "PG_VERSION").exists():
        raise DatabaseUnavailable(
            f"{pg_data_dir} exists but is not a PostgreSQL data directory (no PG_VERSION); "
            f"move it aside or delete it to start a fresh embedded database, or set DATABASE_URL"
        )
    pg_data_dir.mkdir(parents=True, exist_ok=True)
    try:
        return pgserver.get_server(pg_data_dir, cleanup_mode="stop")
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, AssertionError, OSError) as exc:
        log_file = pg_data_dir / "log"
        raise DatabaseUnavailable(
            f"embedded PostgreSQL in {pg_data_dir} did not start ({type(exc).__name__}); "
            f"see {log_file} for the server's reason. If the data directory is damaged, move it aside "
            f"or delete it to start fresh (its data is lost), or set DATABASE_URL"
        ) from exc


def open_pool(url: str, *, max_size: int = 8, timeout: float = 10.0) -> ConnectionPool:
    """A psycopg 3 pool whose connections return dict rows; fails fast with a one-line reason."""
    try:
        # One direct attempt first: the pool would retry quietly and report only a timeout.
        with psycopg.connect(url, connect_timeout=5):
            pass
    except psycopg.Error as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise DatabaseUnavailable(f"cannot connect to PostgreSQL at {describe_target(url)}: {reason}") from exc
    pool = ConnectionPool(
        url,
        min_size=1,
        max_size=max_size,
        kwargs={"row_factory": dict_row, "autocommit": True},
        open=False,
        name="covr",
    )
    pool.open(wait=True, timeout=timeout)
    return pool


class Database:
    """The pool plus, when embedded, the server handle that keeps PostgreSQL alive for this process."""

    def __init__(self, url: str, pool: ConnectionPool, server=None):
        self.url = url
        self.pool = pool
        self._server = server

    @classmethod
    def from_settings(cls, settings) -> Database:
        server = None
        url = settings.database_url
        if not url:
            server = start_embedded(settings.pg_data_dir)
            url = server.get_uri()
        return cls(url, open_pool(url, max_size=settings.db_pool_max), server)

    @property
    def embedded(self) -> bool:
        return self._server is not None

    def connection(self):
        return self.pool.connection()

    def close(self) -> None:
        self.pool.close()
