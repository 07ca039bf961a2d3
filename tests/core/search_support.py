"""Small catalogs for the search tests, written straight into the tables (test set-up only)."""

from __future__ import annotations

from contextlib import contextmanager

import psycopg
from psycopg.rows import dict_row


def connector(db_url: str):
    """A `connect()` like a pool's: autocommit connections with dict rows."""

    @contextmanager
    def connect():
        with psycopg.connect(db_url, autocommit=True, row_factory=dict_row) as conn:
            yield conn

    return connect


def user(conn, handle: str, name: str | None = None) -> str:
    return str(conn.execute("insert into contact.user (handle, display_name) values (%s, %s) returning user_id",
                            (handle, name or handle.title())).fetchone()["user_id"])


def befriend(conn, a: str, b: str) -> None:
    conn.execute("insert into contact.link (user_id, contact_id, status) values (%s, %s, 'accepted')", (a, b))


def book(conn, title: str, authors=(), *, year=None, tags=(), language=None, isbn13=None) -> str:
    return str(conn.execute(
        "insert into catalog.book (title, authors, published_year, tags, language, isbn13) "
        "values (%s, %s, %s, %s, %s, %s) returning book_id",
        (title, list(authors), year, list(tags), language, isbn13)).fetchone()["book_id"])


def copy(conn, book_id: str, owner: str, *, holder: str | None = None, status="available", grade=None,
         notes=None, tags=()) -> str:
    return str(conn.execute(
        "insert into catalog.copy (book_id, owner_id, current_holder_id, status, condition_grade, notes, tags) "
        "values (%s, %s, %s, %s, %s, %s, %s) returning copy_id",
        (book_id, owner, holder or owner, status, grade, notes, list(tags))).fetchone()["copy_id"])


def titles(result) -> list[str]:
    return [h["title"] for h in result.hits]
