"""The contact graph: invitations between members, blocks, and the one question everything else asks of it.

How links are stored (contact.link, migration 0010):

* An invitation or a contact is one row per pair, whichever way round: `user_id` invited `contact_id`. It is
  `pending` until the invited member accepts, then `accepted`. So the pending direction is the row's direction:
  for the inviter the invitation is `outgoing`, for the invited member `incoming`.
* A block is a row of its own, `blocked`, from the blocker (`user_id`) to the blocked member (`contact_id`). It
  replaces the pair's invitation or contact, so blocking ends a contact at once. Two members may block each other;
  each lifts only their own block (`remove`).

What a member sees: their own rows, and the rows others made towards them except blocks. A block against you is
invisible: the blocker cannot be found by search, cannot be invited (the invitation answers exactly like an unknown
handle), and their copies stop being visible because the contact is gone.

Transitions (each one transaction, serialised per pair by an advisory lock; the database refuses others):

    invite:  none -> pending (outgoing)          incoming pending -> accepted (inviting back accepts)
    accept:  incoming pending -> accepted
    decline: incoming pending -> none
    remove:  pending (either way) or accepted -> none; a block of mine -> none (the block is lifted)
    block:   none, pending or accepted -> blocked by me
"""

from __future__ import annotations

import psycopg

from covr_core.shared.errors import Conflict, InvalidInput, InvalidTransition, NotFound
from covr_core.shared.ids import is_uuid

MAX_PAGE = 100
MAX_SEARCH_CHARS = 64


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


# --- reading ------------------------------------------------------------------------------------------------------

# One row per link as `me` sees it: the other member, the status, and which way the link points.
_MY_LINKS = """
    select case when l.user_id = %(me)s then l.contact_id else l.user_id end as other_id,
           l.status,
           case when l.user_id = %(me)s then 'outgoing' else 'incoming' end as direction,
           l.created_at, l.accepted_at
    from contact.link l
    where l.user_id = %(me)s or (l.contact_id = %(me)s and l.status <> 'blocked')
"""


def _row(conn: psycopg.Connection, me: str, other_id: str) -> dict | None:
    """The link between `me` and `other_id` as `me` sees it, or None."""
    return conn.execute(
        f"""
        with mine as ({_MY_LINKS})
        select m.other_id as user_id, u.handle, u.display_name, m.status, m.direction, m.created_at, m.accepted_at
        from mine m join contact.user u on u.user_id = m.other_id
        where m.other_id = %(other)s
        -- A block of mine outranks anything else (a pair has nothing else while it stands).
        order by (m.status = 'blocked') desc
        limit 1
        """,
        {"me": me, "other": other_id},
    ).fetchone()


def get_contact(conn: psycopg.Connection, *, user_id: str, other_id: str) -> dict:
    """The link with `other_id` as `user_id` sees it; NotFound if there is none they can see."""
    row = _row(conn, user_id, other_id) if is_uuid(other_id) else None
    if row is None:
        raise NotFound(f"no contact or invitation with member {other_id}")
    return row


def _page(limit: int, offset: int) -> None:
    if not 1 <= limit <= MAX_PAGE:
        raise InvalidInput(f"limit {limit} is outside 1..{MAX_PAGE}")
    if offset < 0:
        raise InvalidInput(f"offset {offset} is negative")


def list_contacts(
    conn: psycopg.Connection,
    *,
    user_id: str,
    status: str | None = None,
    direction: str | None = None,
    limit: int = 20,
    offset: int = 0,
) -> tuple[list[dict], int]:
    """A page of my contacts, invitations (both ways) and blocks, by handle; and how many match in all."""
    _page(limit, offset)
    if status is not None and status not in ("pending", "accepted", "blocked"):
        raise InvalidInput(f"contact status {status!r} is not one of pending, accepted, blocked")
    if direction is not None and direction not in ("incoming", "outgoing"):
        raise InvalidInput(f"direction {direction!r} is not one of incoming, outgoing")
    params = {"me": user_id, "status": status, "direction": direction, "limit": limit, "offset": offset}
    where = """
        where (%(status)s::text is null or m.status = %(status)s)
          and (%(direction)s::text is null or m.direction = %(direction)s)
    """
    rows = conn.execute(
        f"""
        with mine as ({_MY_LINKS})
        select m.other_id as user_id, u.handle, u.display_name, m.status, m.direction, m.created_at, m.accepted_at
        from mine m join contact.user u on u.user_id = m.other_id
        {where}
        order by u.handle, m.status
        limit %(limit)s offset %(offset)s
        """,
        params,
    ).fetchall()
    count = conn.execute(f"with mine as ({_MY_LINKS}) select count(*) as n from mine m {where}", params).fetchone()
    return rows, count["n"]


def _like_prefix(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def search_members(conn: psycopg.Connection, *, user_id: str, query: str, limit: int = 20) -> list[dict]:
    """Members whose handle, display name, or a word of it, starts with `query` (case-insensitive).

    Excludes me and every member who blocks me. Each result carries my link with them (status and direction, null
    when there is none), so a client can offer invite, accept or unblock. Exact handle first, then by handle.
    """
    q = " ".join(query.split()).lower()
    if not 1 <= len(q) <= MAX_SEARCH_CHARS:
        raise InvalidInput(f"a member search needs 1-{MAX_SEARCH_CHARS} characters, got {len(q)}")
    if not 1 <= limit <= MAX_PAGE:
        raise InvalidInput(f"limit {limit} is outside 1..{MAX_PAGE}")
    return conn.execute(
        f"""
        with mine as ({_MY_LINKS}),
        blocking_me as (
            select user_id from contact.link where contact_id = %(me)s and status = 'blocked'
        ),
        found as (
            select u.user_id, u.handle, u.display_name
            from contact.user u
            where u.user_id <> %(me)s
              and (u.handle like %(prefix)s or lower(u.display_name) like %(prefix)s
                   or lower(u.display_name) like %(word)s)
              and u.user_id not in (select user_id from blocking_me)
        )
        select f.user_id, f.handle, f.display_name, m.status, m.direction
        from found f
        left join lateral (
            select status, direction from mine where mine.other_id = f.user_id
            order by (status = 'blocked') desc limit 1
        ) m on true
        order by (f.handle = %(q)s) desc, f.handle
        limit %(limit)s
        """,
        {"me": user_id, "q": q, "prefix": _like_prefix(q), "word": "% " + _like_prefix(q), "limit": limit},
    ).fetchall()


# --- changing -----------------------------------------------------------------------------------------------------


def _lock_pair(conn: psycopg.Connection, a: str, b: str) -> None:
    """Serialise every change to one pair's links until the transaction ends; take it before reading them."""
    low, high = sorted((a, b))
    conn.execute("select pg_advisory_xact_lock(hashtextextended(%s, 0))", (f"covr.contact.pair:{low}:{high}",))


def _member(conn: psycopg.Connection, user_id: str) -> dict | None:
    if not is_uuid(user_id):
        return None
    return conn.execute(
        "select user_id, handle, display_name from contact.user where user_id = %s", (user_id,)
    ).fetchone()


def _blocks_me(conn: psycopg.Connection, me: str, other_id: str) -> bool:
    return conn.execute(
        "select 1 from contact.link where user_id = %s and contact_id = %s and status = 'blocked'", (other_id, me)
    ).fetchone() is not None


def invite(conn: psycopg.Connection, *, user_id: str, handle: str) -> dict:
    """Invite the member with `handle`; returns the link as I see it.

    An unknown handle and a member who blocks me answer the same NotFound. Inviting someone who already invited me
    accepts their invitation. Already invited, already contacts: Conflict. A member I block: InvalidTransition (lift
    the block first).
    """
    wanted = handle.strip().lower()
    with conn.transaction():
        other = conn.execute(
            "select user_id, handle, display_name from contact.user where handle = %s", (wanted,)
        ).fetchone()
        missing = NotFound(f"no member has the handle {handle.strip()!r}")
        if other is None:
            raise missing
        other_id = str(other["user_id"])
        if other_id == user_id:
            raise InvalidInput("you cannot invite yourself")
        _lock_pair(conn, user_id, other_id)
        if _blocks_me(conn, user_id, other_id):
            raise missing
        link = _row(conn, user_id, other_id)
        if link is None:
            conn.execute(
                "insert into contact.link (user_id, contact_id, status) values (%s, %s, 'pending')",
                (user_id, other_id),
            )
        elif link["status"] == "blocked":
            raise InvalidTransition(f"you block {other['handle']!r}; lift the block before inviting them")
        elif link["status"] == "accepted":
            raise Conflict(f"{other['handle']!r} is already your contact")
        elif link["direction"] == "outgoing":
            raise Conflict(f"you have already invited {other['handle']!r}; they have not answered yet")
        else:
            _accept_row(conn, inviter=other_id, invitee=user_id)
        return _row(conn, user_id, other_id)


def _accept_row(conn: psycopg.Connection, *, inviter: str, invitee: str) -> None:
    conn.execute(
        """
        update contact.link set status = 'accepted', accepted_at = now(), updated_at = now()
        where user_id = %s and contact_id = %s and status = 'pending'
        """,
        (inviter, invitee),
    )


def _visible_link(conn: psycopg.Connection, user_id: str, other_id: str, what: str) -> dict:
    """Lock the pair and read my link with `other_id`; NotFound (naming `what`) when I can see none."""
    if not is_uuid(other_id):
        raise NotFound(f"no {what} with member {other_id}")
    _lock_pair(conn, user_id, other_id)
    link = _row(conn, user_id, other_id)
    if link is None:
        raise NotFound(f"no {what} with member {other_id}")
    return link


def accept(conn: psycopg.Connection, *, user_id: str, other_id: str) -> dict:
    """Accept the invitation `other_id` sent me; returns the link, now accepted."""
    with conn.transaction():
        link = _visible_link(conn, user_id, other_id, "invitation")
        if link["status"] == "accepted":
            raise InvalidTransition(f"{link['handle']!r} is already your contact")
        if link["status"] == "blocked":
            raise InvalidTransition(f"you block {link['handle']!r}; lift the block first")
        if link["direction"] == "outgoing":
            raise InvalidTransition(f"you invited {link['handle']!r}; only they can accept")
        _accept_row(conn, inviter=other_id, invitee=user_id)
        return _row(conn, user_id, other_id)


def decline(conn: psycopg.Connection, *, user_id: str, other_id: str) -> None:
    """Decline the invitation `other_id` sent me; they may invite again later (block them to stop that)."""
    with conn.transaction():
        link = _visible_link(conn, user_id, other_id, "invitation")
        if link["status"] != "pending":
            raise InvalidTransition(f"there is no invitation to decline with {link['handle']!r}: it is {link['status']}")
        if link["direction"] == "outgoing":
            raise InvalidTransition(f"you invited {link['handle']!r}; remove the invitation to withdraw it")
        conn.execute(
            "delete from contact.link where user_id = %s and contact_id = %s and status = 'pending'",
            (other_id, user_id),
        )


def remove(conn: psycopg.Connection, *, user_id: str, other_id: str) -> None:
    """End whatever I have with `other_id`: withdraw or refuse an invitation, end a contact, or lift my block."""
    with conn.transaction():
        link = _visible_link(conn, user_id, other_id, "contact or invitation")
        if link["status"] == "blocked":
            conn.execute(
                "delete from contact.link where user_id = %s and contact_id = %s and status = 'blocked'",
                (user_id, other_id),
            )
        else:
            conn.execute(
                """
                delete from contact.link
                where status <> 'blocked'
                  and ((user_id = %(a)s and contact_id = %(b)s) or (user_id = %(b)s and contact_id = %(a)s))
                """,
                {"a": user_id, "b": other_id},
            )


def block(conn: psycopg.Connection, *, user_id: str, other_id: str) -> dict:
    """Block `other_id`: any invitation or contact between us ends, and they cannot invite me or see my copies.

    NotFound for an unknown member; InvalidTransition if I block them already. Whether they block me too is
    neither revealed nor changed.
    """
    with conn.transaction():
        other = _member(conn, other_id)
        if other is None:
            raise NotFound(f"no member {other_id}")
        if other_id == user_id:
            raise InvalidInput("you cannot block yourself")
        _lock_pair(conn, user_id, other_id)
        link = _row(conn, user_id, other_id)
        if link is not None and link["status"] == "blocked":
            raise InvalidTransition(f"you already block {other['handle']!r}")
        conn.execute(
            """
            delete from contact.link
            where status <> 'blocked'
              and ((user_id = %(a)s and contact_id = %(b)s) or (user_id = %(b)s and contact_id = %(a)s))
            """,
            {"a": user_id, "b": other_id},
        )
        conn.execute(
            "insert into contact.link (user_id, contact_id, status) values (%s, %s, 'blocked')", (user_id, other_id)
        )
        return _row(conn, user_id, other_id)
