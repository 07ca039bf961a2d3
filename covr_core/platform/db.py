"""Connections to the system of record: a configured DATABASE_URL, or embedded PostgreSQL in COVR_HOME."""

from __future__ import annotations

import atexit
import logging
import os
import subprocess
import threading
import warnings
import weakref
from dataclasses import dataclass
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


def _pgserver():
    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset and falls back to /tmp, which is fine here.
        warnings.simplefilter("ignore")
        import pgserver  # imported lazily: it is only needed without DATABASE_URL
    return pgserver


def _is_alive(pid: int) -> bool:
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _handle_list(pg_data_dir: Path):
    from pgserver.utils import DiskList

    return DiskList(pg_data_dir / ".handle_pids.json")


def prune_dead_handles(pg_data_dir: Path) -> list[int]:
    """Drop the pids of processes that are gone from pgserver's handle list; returns those still alive.

    pgserver removes a pid only in the exiting process's atexit hook, so a process killed with
    SIGKILL (or by the OOM killer) stays listed, and the server would never stop again.
    """
    pgserver = _pgserver()
    handles = _handle_list(pg_data_dir.resolve())
    with pgserver.PostgresServer._lock:
        pids = handles.get()
        alive = [pid for pid in pids if _is_alive(pid)]
        if alive != pids:
            log.info("dropping handles of exited processes %s", sorted(set(pids) - set(alive)))
            handles.put(alive)
    return alive


def start_embedded(pg_data_dir: Path):
    """Start (or join) the embedded PostgreSQL 16 server for this data directory.

    pgserver keeps a list of handle pids next to the data and an inter-process lock, so several
    covr processes on one COVR_HOME share one server, and the last one out stops it. Pids of
    processes that died without leaving are pruned first, so they cannot keep it up forever.
    """
    pgserver = _pgserver()
    pg_data_dir = pg_data_dir.absolute()
    if pg_data_dir.exists() and any(pg_data_dir.iterdir()) and not (pg_data_dir / "PG_VERSION").exists():
        raise DatabaseUnavailable(
            f"{pg_data_dir} exists but is not a PostgreSQL data directory (no PG_VERSION); "
            f"move it aside or delete it to start a fresh embedded database, or set DATABASE_URL"
        )
    pg_data_dir.mkdir(parents=True, exist_ok=True)
    try:
        prune_dead_handles(pg_data_dir)
        return pgserver.get_server(pg_data_dir, cleanup_mode="stop")
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, AssertionError, OSError) as exc:
        log_file = pg_data_dir / "log"
        raise DatabaseUnavailable(
            f"embedded PostgreSQL in {pg_data_dir} did not start ({type(exc).__name__}); "
            f"see {log_file} for the server's reason. If the data directory is damaged, move it aside "
            f"or delete it to start fresh (its data is lost), or set DATABASE_URL"
        ) from exc


def release_embedded(server) -> None:
    """Give up this process's handle on the server; the server stops if no live process holds it.

    The inverse of start_embedded, for a process that is done with the server but not exiting
    (pgserver's own atexit hook is the only other way a handle is released).
    """
    pgserver = _pgserver()
    prune_dead_handles(server.pgdata)
    server.cleanup()
    # pgserver caches one handle per data directory and forgets it only when the server stops; a
    # cached handle whose pid is no longer listed would let a later start_embedded here run unheld.
    if pgserver.PostgresServer._instances.get(server.pgdata) is server:
        del pgserver.PostgresServer._instances[server.pgdata]
    atexit.unregister(server._cleanup)


def _pgserver_system_user() -> str | None:
    # pgserver runs the server as its own unprivileged user when it is started by root.
    return "pgserver" if hasattr(os, "geteuid") and os.geteuid() == 0 else None


@dataclass(frozen=True)
class StopOutcome:
    server_pid: int
    holders: list[int]  # live processes that still held a handle when the server was stopped


def embedded_server_pid(pg_data_dir: Path) -> int | None:
    """The postmaster's pid if the embedded server for this data directory is running, else None."""
    _pgserver()
    from pgserver.utils import PostmasterInfo

    info = PostmasterInfo.read_from_pgdata(pg_data_dir.resolve())
    return info.pid if info is not None and info.is_running() else None


def stop_embedded(pg_data_dir: Path, *, before_stop=None) -> StopOutcome | None:
    """Stop the embedded server for this data directory whoever holds it; None if it was not running.

    `before_stop(outcome)` is called first, so a person can be told what is about to be stopped.
    Processes still holding a handle lose their connections; their own exit then finds nothing to do.
    """
    pgserver = _pgserver()
    from pgserver._commands import pg_ctl

    pg_data_dir = pg_data_dir.resolve()
    if not (pg_data_dir / "PG_VERSION").exists():
        return None
    handles = _handle_list(pg_data_dir)
    with pgserver.PostgresServer._lock:
        pid = embedded_server_pid(pg_data_dir)
        if pid is None:
            handles.put([])
            return None
        outcome = StopOutcome(server_pid=pid, holders=[p for p in handles.get() if _is_alive(p)])
        if before_stop is not None:
            before_stop(outcome)
        try:
            pg_ctl(["-w", "-m", "fast", "stop"], pgdata=pg_data_dir, user=_pgserver_system_user(), timeout=60)
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
            raise DatabaseUnavailable(
                f"embedded PostgreSQL in {pg_data_dir} (pid {pid}) did not stop ({type(exc).__name__}); "
                f"see {pg_data_dir / 'log'}"
            ) from exc
        handles.put([])
    return outcome


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


# pgserver holds one handle per process and data directory, while a process may open several
# Databases on it (the API, a Dagster run's resources); the handle is released with the last.
_holders: dict[Path, int] = {}
_holders_lock = threading.Lock()
_open_databases: weakref.WeakSet[Database] = weakref.WeakSet()


def _acquire_embedded(pg_data_dir: Path):
    with _holders_lock:
        server = start_embedded(pg_data_dir)
        _holders[server.pgdata] = _holders.get(server.pgdata, 0) + 1
    # atexit runs hooks last-in first-out: registered again after pgserver's, ours closes the pools
    # before pgserver's hook stops the server under them.
    atexit.unregister(_close_open_databases)
    atexit.register(_close_open_databases)
    return server


def _release_acquired(server) -> None:
    with _holders_lock:
        left = _holders.get(server.pgdata, 1) - 1
        if left > 0:
            _holders[server.pgdata] = left
            return
        _holders.pop(server.pgdata, None)
        release_embedded(server)


class Database:
    """The pool plus, when embedded, the server handle that keeps PostgreSQL alive for this process."""

    def __init__(self, url: str, pool: ConnectionPool, server=None):
        self.url = url
        self.pool = pool
        self._server = server
        self._closed = False
        self._close_lock = threading.Lock()
        _open_databases.add(self)

    @classmethod
    def from_settings(cls, settings) -> Database:
        url = settings.database_url
        if url:
            return cls(url, open_pool(url, max_size=settings.db_pool_max))
        server = _acquire_embedded(settings.pg_data_dir)
        try:
            url = server.get_uri()
            return cls(url, open_pool(url, max_size=settings.db_pool_max), server)
        except BaseException:
            _release_acquired(server)
            raise

    @property
    def embedded(self) -> bool:
        return self._server is not None

    def connection(self):
        return self.pool.connection()

    def close(self) -> None:
        """Close the pool, then release the embedded server handle; safe to call more than once."""
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        _open_databases.discard(self)
        try:
            self.pool.close()
        finally:
            if self._server is not None:
                _release_acquired(self._server)

    def __enter__(self) -> Database:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _close_open_databases() -> None:
    """A safety net for entry points that exit without closing their Database."""
    for db in list(_open_databases):
        try:
            db.close()
        except Exception:  # noqa: BLE001 - the interpreter is exiting; log and keep releasing the rest
            log.exception("closing %s at exit failed", describe_target(db.url))


atexit.register(_close_open_databases)
