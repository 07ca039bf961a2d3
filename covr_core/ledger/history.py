"""Read model of a copy's history: who, what, when and the photo evidence, newest last, one page at a time."""

from __future__ import annotations

import psycopg


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


def visible_copy(conn: psycopg.Connection, user_id: str, copy_id: str) -> dict:
    """The copy, when `user_id` may see it: its owner, its holder, or an accepted contact of either.

    A copy the caller may not see answers exactly like one that does not exist.
    """
    from covr_core.contact.links import is_accepted_contact
    from covr_core.shared.errors import NotFound
    from covr_core.shared.ids import is_uuid

    missing = NotFound(f"copy {copy_id} not found")
    if not is_uuid(copy_id):
        raise missing
    row = conn.execute(
        "select copy_id, owner_id, current_holder_id from catalog.copy where copy_id = %s", (copy_id,)
    ).fetchone()
    if row is None:
        raise missing
    owner, holder = str(row["owner_id"]), str(row["current_holder_id"])
    if user_id in (owner, holder) or any(is_accepted_contact(conn, user_id, other) for other in {owner, holder}):
        return dict(row)
    raise missing
