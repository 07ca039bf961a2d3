"""Migrations apply to an empty database, re-run as a no-op, and refuse edited history."""

from __future__ import annotations

import psycopg
import pytest
from psycopg.rows import dict_row

from covr_core.platform import migrations


def test_every_migration_applies_to_an_empty_database(empty_db_url):
    with psycopg.connect(empty_db_url, row_factory=dict_row) as conn:
        applied = migrations.migrate(conn)
        schemas = {r["nspname"] for r in conn.execute("select nspname from pg_namespace").fetchall()}
        states = migrations.status(conn)

    assert applied == [f.name for f in migrations.migration_files()]
    assert {"contact", "catalog", "media", "ingest", "exchange", "outbox", "read_model"} <= schemas
    assert {s.state for s in states} == {"applied"}


def test_rerunning_migrate_is_a_no_op(empty_db_url):
    with psycopg.connect(empty_db_url, row_factory=dict_row) as conn:
        migrations.migrate(conn)
        before = conn.execute("select filename, applied_at from schema_migrations order by 1").fetchall()
        assert migrations.migrate(conn) == []
        after = conn.execute("select filename, applied_at from schema_migrations order by 1").fetchall()

    assert before == after


def test_an_edited_migration_is_refused(empty_db_url, monkeypatch):
    with psycopg.connect(empty_db_url, row_factory=dict_row) as conn:
        migrations.migrate(conn)
        original = migrations.migration_files()
        edited = [migrations.SqlFile(original[1].name, original[1].sql + "\n-- sneaky edit\n")]
        monkeypatch.setattr(migrations, "migration_files", lambda: original[:1] + edited + original[2:])

        with pytest.raises(migrations.MigrationError, match=rf"{original[1].name} was edited after it was applied"):
            migrations.migrate(conn)
        assert [s.state for s in migrations.status(conn)][1] == "edited"


def test_every_read_model_is_a_select_with_its_grain_first(conn):
    for model in migrations.model_files():
        name = model.name.removesuffix(".sql")
        assert model.sql.splitlines()[0].startswith("-- grain: one row per"), model.name
        conn.execute(f"select * from read_model.{name} limit 1")
