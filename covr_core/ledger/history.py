"""Read model of a copy's history: who, what, when and the photo evidence, newest last, one page at a time."""

from __future__ import annotations

import psycopg

from covr_core.catalog.copies import require_visible


def entries(conn: psycopg.Connection, copy_id: str, *, after_seq: int = 0, limit: int = 50) -> tuple[list[dict], int]:
    """One page of entries after `after_seq`, and the number of entries in the chain."""
    rows = conn.execute(
        """
        select e.seq, e.entry_type, e.ts, e.from_user_id, fu.handle as from_handle, e.to_user_id,
               tu.handle as to_handle, e.refs, e.payload, encode(e.entry_hash, 'hex') as entry_hash,
               encode(e.prev_hash, 'hex') as prev_hash
        from ledger.entry e
        left join contact.user fu on fu.user_id = e.from_user_id
        left join contact.user tu on tu.user_id = e.to_user_id
        where e.copy_id = %s and e.seq > %s
        order by e.seq
        limit %s
        """,
        (copy_id, after_seq, limit),
    ).fetchall()
    count = conn.execute("select count(*) as n from ledger.entry where copy_id = %s", (copy_id,)).fetchone()
    n = count["n"] if isinstance(count, dict) else count[0]
    return [dict(r) for r in rows], n


def require_visible_copy(conn: psycopg.Connection, user_id: str, copy_id: str) -> None:
    """NotFound unless `user_id` may see the copy; a copy's history is visible exactly to whoever can see the copy.

    catalog.copies.is_visible is that rule (owner, holder, or an accepted contact of the holder while the
    copy is neither withdrawn nor lost); a copy the caller may not see answers exactly like a missing one.
    """
    require_visible(conn, user_id, copy_id)
