"""Helpers of the ledger tests: members, a book and copies made in SQL, and tampering as an attacker would."""

from __future__ import annotations

def make_user(conn, handle: str) -> str:
    return str(conn.execute(
        "insert into contact.user (handle, display_name) values (%s, %s) returning user_id", (handle, handle.title())
    ).fetchone()["user_id"])


def make_copy(conn, owner: str) -> str:
    book = conn.execute(
        "insert into catalog.book (title, authors) values ('A Book', '{Someone}') returning book_id"
    ).fetchone()["book_id"]
    return str(conn.execute(
        "insert into catalog.copy (book_id, owner_id, current_holder_id) values (%s, %s, %s) returning copy_id",
        (book, owner, owner),
    ).fetchone()["copy_id"])


def as_attacker(conn, sql: str, params=()) -> None:
    """Run `sql` the way an attacker with table access would: `session_replication_role = replica` turns off
    every ordinary trigger (the append-only ones included) for this session, as the table owner or a superuser
    may. The ledger must then still *detect* the change."""
    with conn.transaction():
        conn.execute("set local session_replication_role = replica")
        conn.execute(sql, params)
