"""`covr db` against real PostgreSQL, and the one-line errors a person gets for bad configuration."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from covr_core.platform.db import Database, embedded_server_pid, stop_embedded
from covr_core.platform.migrations import migrate, migration_files
from covr_core.platform.settings import Settings
from covr_pipelines.cli import main


def _covr(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "covr_pipelines.cli", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_migrate_then_status_on_a_configured_database(empty_db_url, monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("DATABASE_URL", empty_db_url)
    monkeypatch.setenv("COVR_HOME", str(tmp_path))

    assert main(["db", "migrate"]) == 0
    assert f"applied {len(migration_files())} migration(s)" in capsys.readouterr().out
    assert main(["db", "status"]) == 0
    out = capsys.readouterr().out
    assert "up to date" in out and "applied  0001_create_schemas.sql" in out


def test_a_wrong_database_url_is_one_line_naming_the_host(tmp_path):
    result = _covr("db", "status", env={"DATABASE_URL": "postgresql://covr:pw@127.0.0.1:1/covr",
                                        "COVR_HOME": str(tmp_path)})

    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("covr: cannot connect to PostgreSQL at 127.0.0.1:1/covr:")
    assert "Traceback" not in result.stderr


def test_a_corrupt_covr_home_says_what_to_do(tmp_path):
    pg = tmp_path / "pg"
    pg.mkdir()
    (pg / "garbage").write_text("not a database")
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    result = subprocess.run(
        [sys.executable, "-m", "covr_pipelines.cli", "db", "status"],
        env={**env, "COVR_HOME": str(tmp_path)}, capture_output=True, text=True, timeout=120,
    )

    assert result.returncode == 2
    assert "is not a PostgreSQL data directory" in result.stderr
    assert "move it aside or delete it" in result.stderr
    assert "Traceback" not in result.stderr


def test_concurrent_covr_processes_share_one_embedded_server(tmp_path):
    """Three processes start on one fresh COVR_HOME at once: one server, migrations applied once."""
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env["COVR_HOME"] = str(tmp_path)
    procs = [
        subprocess.Popen([sys.executable, "-m", "covr_pipelines.cli", "db", "migrate"], env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(3)
    ]
    outputs = [p.communicate(timeout=180) for p in procs]

    assert [p.returncode for p in procs] == [0, 0, 0], outputs
    applied = sorted(int(out.split("applied ")[1].split(" ")[0]) for out, _ in outputs)
    assert applied == [0, 0, len(migration_files())]  # the advisory lock let exactly one of them migrate
    status = subprocess.run([sys.executable, "-m", "covr_pipelines.cli", "db", "status"], env=env,
                            capture_output=True, text=True, timeout=120)
    assert status.returncode == 0 and "up to date" in status.stdout, status.stderr


@pytest.fixture(scope="module")
def edited_home(tmp_path_factory):
    """A COVR_HOME whose first migration was edited after it was applied: every migrating command refuses it."""
    home = tmp_path_factory.mktemp("edited-home")
    with Database.from_settings(Settings(home=home, database_url=None)) as db, db.connection() as conn:
        migrate(conn)
        conn.execute("update public.schema_migrations set checksum = 'edited' where filename = %s",
                     (migration_files()[0].name,))
    yield home
    stop_embedded(home / "pg")


@pytest.mark.parametrize("command", [["run"], ["ingest", "--retry-failed"], ["catalog", "import", "CATALOG"]],
                         ids=["run", "ingest", "catalog-import"])
def test_a_command_whose_migration_fails_releases_the_embedded_server(edited_home, command, tmp_path,
                                                                      monkeypatch, capsys):
    """In-process, as `covr demo` runs its steps: the refused command must not keep the server up until exit."""
    catalog = tmp_path / "books.jsonl"
    catalog.write_text('{"isbn13": "9780306406157", "title": "Rivers of Salt", "authors": ["Tomas Ferreira"]}\n')
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.setenv("COVR_HOME", str(edited_home))

    assert main([str(catalog) if arg == "CATALOG" else arg for arg in command]) == 2

    [line] = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("covr: migration ") and "was edited after it was applied" in line
    assert embedded_server_pid(edited_home / "pg") is None, "the failed command left the embedded server running"
    assert json.loads((edited_home / "pg" / ".handle_pids.json").read_text()) == []
