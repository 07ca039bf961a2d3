"""`covr search`, `covr search sync --once` and `covr reindex` against real Postgres."""

from __future__ import annotations

import json

import psycopg
import pytest
from psycopg.rows import dict_row

from covr_pipelines.cli import main
from tests.core.search_support import befriend, book, copy, user


@pytest.fixture
def env(db_url, tmp_path, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", db_url)
    monkeypatch.setenv("COVR_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("MEILI_URL", raising=False)
    monkeypatch.delenv("QDRANT_URL", raising=False)
    with psycopg.connect(db_url, autocommit=True, row_factory=dict_row) as conn:
        alice, bob, carol = user(conn, "alice"), user(conn, "bob", "Bob Stone"), user(conn, "carol")
        befriend(conn, alice, bob)
        copy(conn, book(conn, "The Pragmatic Programmer", ["Andrew Hunt"], year=2019), alice, grade=9)
        copy(conn, book(conn, "Dune", ["Frank Herbert"], year=1965), bob, grade=5)
        copy(conn, book(conn, "Dune Messiah", ["Frank Herbert"], year=1969), carol)
        yield conn


def test_reindex_then_search_as_a_member(env, capsys):
    assert main(["reindex"]) == 0
    out = capsys.readouterr().out
    assert "search: 3 document(s) into search.copy_document" in out and "vectors: 0 point(s)" in out
    assert main(["search", "pragmatc", "programer"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("The Pragmatic Programmer - Andrew Hunt (2019)  [available, held by Alice]")
    assert "1 shown of 1 match(es)" in out
    assert main(["search", "dune", "--as", "alice", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert [h["title"] for h in result["hits"]] == ["Dune"] and result["total"] == 1
    assert set(result) == {"hits", "total", "facets", "took_ms", "backend"}
    assert main(["search", "--filter", "published_year < 2000", "--sort", "published_year:desc", "--facets",
                 "status", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert [h["title"] for h in result["hits"]] == ["Dune Messiah", "Dune"]
    assert result["facets"] == {"status": {"available": 2}}


def test_bad_input_and_unknown_members_exit_2(env, capsys):
    assert main(["search", "--filter", "notes = x"]) == 2
    assert "not filterable" in capsys.readouterr().err
    assert main(["search", "dune", "--as", "nobody"]) == 2
    assert "no member with handle 'nobody'" in capsys.readouterr().err


def test_search_sync_once_builds_then_follows_the_outbox(env, capsys):
    assert main(["search", "sync", "--once"]) == 0
    assert "search sync: first build: 3 document(s)" in capsys.readouterr().out
    env.execute("update contact.user set display_name = 'Robert' where handle = 'bob'")
    assert main(["search", "sync", "--once"]) == 0  # no event for a rename made behind the app's back
    assert "0 event(s)" in capsys.readouterr().out
