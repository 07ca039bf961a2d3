"""Forward-only SQL migrations and read models from dbt_like_sql/, recorded with checksums."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import datetime
from importlib import resources

import psycopg

MIGRATION_NAME = re.compile(r"^(?P<version>\d{4})_(?P<verb>[a-z]+)_(?P<object>[a-z0-9_]+)\.sql$")
MODEL_NAME = re.compile(r"^(?P<name>[a-z][a-z0-9_]*)\.sql$")
READ_MODEL_SCHEMA = "read_model"
# One key for every covr process, so concurrent `covr db migrate` runs queue instead of racing.
ADVISORY_LOCK_KEY = 0x636F7672  # "covr"


class MigrationError(RuntimeError):
    """The migration history cannot be trusted; the message says which file and what to do."""


@dataclass(frozen=True)
class SqlFile:
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


@dataclass(frozen=True)
class MigrationState:
    name: str
    state: str  # applied | pending | edited | missing
    applied_at: datetime | None


def _sql_files(folder: str, pattern: re.Pattern) -> list[SqlFile]:
    root = resources.files("dbt_like_sql") / folder
    files = []
    for entry in sorted(root.iterdir(), key=lambda e: e.name):
        if not entry.name.endswith(".sql"):
            continue
        if not pattern.match(entry.name):
            raise MigrationError(f"{folder}/{entry.name} does not follow the naming rule {pattern.pattern}")
        files.append(SqlFile(entry.name, entry.read_text()))
    return files


def migration_files() -> list[SqlFile]:
    files = _sql_files("migrations", MIGRATION_NAME)
    versions = [f.name[:4] for f in files]
    if len(set(versions)) != len(versions):
        raise MigrationError(f"two migrations share a version number: {sorted(versions)}")
    return files


def model_files() -> list[SqlFile]:
    models = _sql_files("models", MODEL_NAME)
    for model in models:
        if not model.sql.lstrip().startswith("--"):
            raise MigrationError(f"models/{model.name} must state its grain in a comment on the first line")
    return models


def _ensure_history_table(conn: psycopg.Connection) -> None:
    conn.execute(
        """
        create table if not exists public.schema_migrations (
            filename   text primary key,
            checksum   text not null,
            applied_at timestamptz not null default now()
        )
        """
    )


def _applied(conn: psycopg.Connection) -> dict[str, tuple[str, datetime]]:
    rows = conn.execute("select filename, checksum, applied_at from public.schema_migrations").fetchall()
    return {_col(r, 0, "filename"): (_col(r, 1, "checksum"), _col(r, 2, "applied_at")) for r in rows}


def _col(row, index: int, name: str):
    return row[name] if isinstance(row, dict) else row[index]


def status(conn: psycopg.Connection) -> list[MigrationState]:
    """Each migration on disk or in the history, and whether it is applied, pending or edited."""
    with conn.transaction():
        _ensure_history_table(conn)
        applied = _applied(conn)
    states = []
    on_disk = {f.name: f for f in migration_files()}
    for name in sorted(set(on_disk) | set(applied)):
        if name not in on_disk:
            states.append(MigrationState(name, "missing", applied[name][1]))
        elif name not in applied:
            states.append(MigrationState(name, "pending", None))
        elif applied[name][0] != on_disk[name].checksum:
            states.append(MigrationState(name, "edited", applied[name][1]))
        else:
            states.append(MigrationState(name, "applied", applied[name][1]))
    return states


def _refuse_tampered_history(states: list[MigrationState]) -> None:
    for s in states:
        if s.state == "edited":
            raise MigrationError(
                f"migration {s.name} was edited after it was applied (checksum differs from the one recorded "
                f"in schema_migrations); migrations are forward-only: restore the file and add a new migration"
            )
        if s.state == "missing":
            raise MigrationError(
                f"migration {s.name} is recorded as applied but its file is gone; restore it from version control"
            )


def migrate(conn: psycopg.Connection) -> list[str]:
    """Apply pending migrations, each in its own transaction, then rebuild the read-model views.

    Returns the names of the migrations applied by this call (empty on a re-run).
    """
    conn.execute("select pg_advisory_lock(%s)", (ADVISORY_LOCK_KEY,))
    try:
        conn.commit()
        states = status(conn)
        _refuse_tampered_history(states)
        pending = {s.name for s in states if s.state == "pending"}
        applied_now = []
        for migration in migration_files():
            if migration.name not in pending:
                continue
            with conn.transaction():
                try:
                    conn.execute(migration.sql)
                except psycopg.Error as exc:
                    raise MigrationError(f"migration {migration.name} failed: {exc}".strip()) from exc
                conn.execute(
                    "insert into public.schema_migrations (filename, checksum) values (%s, %s)",
                    (migration.name, migration.checksum),
                )
            applied_now.append(migration.name)
        build_models(conn)
        return applied_now
    finally:
        conn.execute("select pg_advisory_unlock(%s)", (ADVISORY_LOCK_KEY,))
        conn.commit()


def build_models(conn: psycopg.Connection) -> list[str]:
    """Create every read model as a view in one transaction, so readers never see half of them."""
    models = model_files()
    with conn.transaction():
        conn.execute(f"create schema if not exists {READ_MODEL_SCHEMA}")
        for model in models:
            name = model.name.removesuffix(".sql")
            conn.execute(f"drop view if exists {READ_MODEL_SCHEMA}.{name} cascade")
            conn.execute(f"create view {READ_MODEL_SCHEMA}.{name} as\n{model.sql}")
    return [m.name for m in models]
