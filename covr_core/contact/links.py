"""The contact graph: invitations between members, and the one question everything else asks of it."""

from __future__ import annotations

import psycopg


def is_accepted_contact(conn: psycopg.Connection, user_id: str, other_id: str) -> bool:
    """Whether the two members are accepted contacts (links are stored once, in either direction)."""
    row = conn.execute(
        """
        select 1 from contact.link
        where status = 'accepted'
          and ((user_id = %(a)s and contact_id = %(b)s) or (user_id = %(b)s and contact_id = %(a)s))
        """,
        {"a": user_id, "b": other_id},
    ).fetchone()
    return row is not None
