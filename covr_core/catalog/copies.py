"""Physical copies: creating them, what a member may see of them, and the owner's and holder's own changes.

Visibility (OWASP API1, BOLA): a member sees the copies they own or hold, and the copies held by their accepted
contacts unless withdrawn or lost. Everything else answers NotFound with exactly the words a missing copy gets, so
nobody learns whether a copy id exists.

Who may change a copy:

* notes, tags, availability and withdrawing: the owner only. It is their book; a borrower holds it for a while.
* marking it lost: the owner or the current holder (the borrower is the one who finds it gone).

A member who can see a copy but may not make the change gets the same NotFound as for an invisible copy, so no
answer distinguishes "not yours" from "not there". A change the copy's state does not allow is InvalidTransition.

Statuses: `available` and `unavailable` are the owner's to switch (availability); `requested` and `on_loan` belong
to the exchange; `withdrawn` (taken out of circulation by the owner) and `lost` are final, except that a withdrawn
copy may still be found lost. The database holds the last two rules as well (migration 0010).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable
from typing import Any

import psycopg
from psycopg.rows import dict_row

from covr_core.shared.errors import InvalidInput, InvalidTransition, NotFound
from covr_core.shared.events import CopyLost, CopyUpdated, CopyWithdrawn
from covr_core.shared.ids import is_uuid
from covr_core.shared.outbox import append_event

STATUSES: tuple[str, ...] = ("available", "unavailable", "requested", "on_loan", "withdrawn", "lost")
AVAILABILITY: tuple[str, ...] = ("available", "unavailable")
NOTES_MAX_CHARS = 2000
TAG_MAX_CHARS, MAX_TAGS = 64, 50
MAX_PAGE = 100

# Marks "not given" in update_copy, where None means "clear it".
UNSET: Any = type("Unset", (), {"__repr__": lambda self: "UNSET"})()

ThumbnailUrl = Callable[[dict], "str | None"]


def create_copy(
    conn: psycopg.Connection,
    *,
    book_id: str,
    owner_id: str,
    holder_id: str | None = None,
    condition_grade: int | None = None,
) -> str:
    """A new copy of `book_id`, owned by `owner_id` and held by `holder_id` (the owner by default); its id.

    Runs in the caller's transaction when there is one (ingest's dedup decision), else in its own.
    """
    with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(
            """
            insert into catalog.copy (book_id, owner_id, current_holder_id, condition_grade)
            values (%s, %s, %s, %s) returning copy_id
            """,
            (book_id, owner_id, holder_id or owner_id, condition_grade),
        ).fetchone()
    return str(row["copy_id"])


# --- reading ------------------------------------------------------------------------------------------------------

# Statuses of a copy that only its owner and holder still see; contacts of the holder see every other status.
HIDDEN_FROM_CONTACTS: tuple[str, ...] = ("withdrawn", "lost")


def visible_sql(alias: str = "c", viewer: str = "%(viewer)s") -> str:
    """The visibility rule as a SQL predicate on any relation with owner_id, current_holder_id and status.

    Read models (search documents) apply the same rule through this, so there is one rule. Reads contact.link
    directly: reads across schemas are fine, writes are not.
    """
    hidden = ", ".join(f"'{s}'" for s in HIDDEN_FROM_CONTACTS)
    # The contacts are an uncorrelated subquery: Postgres computes them once per statement and probes a hash,
    # instead of one lookup in contact.link per candidate row (a search ranks thousands).
    return f"""
    ({alias}.owner_id = {viewer} or {alias}.current_holder_id = {viewer}
     or ({alias}.status not in ({hidden}) and {alias}.current_holder_id in (
            select case when l.user_id = {viewer} then l.contact_id else l.user_id end
            from contact.link l
            where l.status = 'accepted' and (l.user_id = {viewer} or l.contact_id = {viewer}))))
"""


def visible_candidates_sql(alias: str = "c", viewer: str = "%(viewer)s") -> str:
    """A condition every copy `visible_sql` admits meets, in a form indexes on owner_id and current_holder_id serve:
    owned by the viewer, or held by the viewer or one of their accepted contacts. AND it with `visible_sql` so
    Postgres can start from the viewer's few copies instead of testing every candidate."""
    return f"""
    ({alias}.owner_id = {viewer} or {alias}.current_holder_id = any(array(
        select {viewer} union all
        select case when l.user_id = {viewer} then l.contact_id else l.user_id end
        from contact.link l
        where l.status = 'accepted' and (l.user_id = {viewer} or l.contact_id = {viewer}))))
"""


def contact_ids(conn: psycopg.Connection, viewer_id: str) -> list[str]:
    """The members whose held copies `viewer_id` sees (outside HIDDEN_FROM_CONTACTS): their accepted contacts.

    For read models that filter outside Postgres (Meilisearch): owner or holder is the viewer, or the holder is one
    of these and the status is not hidden from contacts; exactly `visible_sql`.
    """
    rows = conn.execute(
        """
        select case when l.user_id = %(viewer)s then l.contact_id else l.user_id end as contact_id
        from contact.link l
        where l.status = 'accepted' and (l.user_id = %(viewer)s or l.contact_id = %(viewer)s)
        order by 1
        """,
        {"viewer": viewer_id},
    ).fetchall()
    return [str(r["contact_id"] if isinstance(r, dict) else r[0]) for r in rows]


# A copy `viewer` may see.
_VISIBLE = visible_sql()

_COPY_SELECT = """
    select c.copy_id, c.status, c.condition_grade, c.notes, c.tags, c.created_at, c.updated_at,
           b.book_id, b.isbn13, b.title, b.authors, b.published_year, b.language,
           o.user_id as owner_id, o.handle as owner_handle, o.display_name as owner_display_name,
           h.user_id as holder_id, h.handle as holder_handle, h.display_name as holder_display_name
    from catalog.copy c
    join catalog.book b on b.book_id = c.book_id
    join contact.user o on o.user_id = c.owner_id
    join contact.user h on h.user_id = c.current_holder_id
"""


def _shape(row: dict) -> dict:
    return {
        "copy_id": str(row["copy_id"]),
        "status": row["status"],
        "condition_grade": row["condition_grade"],
        "notes": row["notes"],
        "tags": list(row["tags"]),
        "created_at": row["created_at"],
        "updated_at": row["updated_at"],
        "book": {
            "book_id": str(row["book_id"]),
            "isbn13": row["isbn13"],
            "title": row["title"],
            "authors": list(row["authors"]),
            "published_year": row["published_year"],
            "language": row["language"],
        },
        "owner": {"user_id": str(row["owner_id"]), "handle": row["owner_handle"],
                  "display_name": row["owner_display_name"]},
        "holder": {"user_id": str(row["holder_id"]), "handle": row["holder_handle"],
                   "display_name": row["holder_display_name"]},
    }


def _not_found(copy_id: str) -> NotFound:
    # One wording for missing, invisible and not-yours alike.
    return NotFound(f"copy {copy_id} not found")


def list_copies(
    conn: psycopg.Connection,
    *,
    viewer_id: str,
    status: str | None = None,
    holder_id: str | None = None,
    owner_id: str | None = None,
    limit: int = 20,
    offset: int = 0,
) -> tuple[list[dict], int]:
    """A page of the copies `viewer_id` may see, newest first, optionally by status, holder and owner; and the total.

    A holder or owner the viewer cannot see simply matches nothing.
    """
    if not 1 <= limit <= MAX_PAGE:
        raise InvalidInput(f"limit {limit} is outside 1..{MAX_PAGE}")
    if offset < 0:
        raise InvalidInput(f"offset {offset} is negative")
    if status is not None and status not in STATUSES:
        raise InvalidInput(f"copy status {status!r} is not one of {', '.join(STATUSES)}")
    for what, value in (("holder", holder_id), ("owner", owner_id)):
        if value is not None and not is_uuid(value):
            raise InvalidInput(f"{what} {value!r} is not a member id (a uuid)")
    where = f"""
        where {_VISIBLE}
          and (%(status)s::text is null or c.status = %(status)s)
          and (%(holder)s::uuid is null or c.current_holder_id = %(holder)s::uuid)
          and (%(owner)s::uuid is null or c.owner_id = %(owner)s::uuid)
    """
    params = {"viewer": viewer_id, "status": status, "holder": holder_id, "owner": owner_id,
              "limit": limit, "offset": offset}
    rows = conn.execute(
        f"{_COPY_SELECT} {where} order by c.created_at desc, c.copy_id desc limit %(limit)s offset %(offset)s",
        params,
    ).fetchall()
    count = conn.execute(f"select count(*) as n from catalog.copy c {where}", params).fetchone()
    return [_shape(r) for r in rows], count["n"]


def is_visible(conn: psycopg.Connection, viewer_id: str, copy_id: str) -> bool:
    """The one visibility rule: the viewer owns or holds the copy, or an accepted contact holds it (and it is
    neither withdrawn nor lost). Every context that shows or acts on copies asks this, never its own rule."""
    if not is_uuid(copy_id):
        return False
    row = conn.execute(
        f"select 1 from catalog.copy c where c.copy_id = %(copy)s and {_VISIBLE}", {"copy": copy_id, "viewer": viewer_id}
    ).fetchone()
    return row is not None


def require_visible(conn: psycopg.Connection, viewer_id: str, copy_id: str) -> None:
    """NotFound unless `viewer_id` may see the copy: for callers that need the rule, not the row."""
    if not is_visible(conn, viewer_id, copy_id):
        raise _not_found(copy_id)


def _visible_row(conn: psycopg.Connection, viewer_id: str, copy_id: str) -> dict:
    row = None
    if is_uuid(copy_id):
        row = conn.execute(
            f"{_COPY_SELECT} where c.copy_id = %(copy)s and {_VISIBLE}", {"copy": copy_id, "viewer": viewer_id}
        ).fetchone()
    if row is None:
        raise _not_found(copy_id)
    return row


def visible_copy(conn: psycopg.Connection, *, viewer_id: str, copy_id: str) -> dict:
    """The copy (its book, owner and holder, as view_copy without images) if `viewer_id` may see it; else NotFound.

    The one visibility rule for everything shown about a copy, its history (the ledger) included.
    """
    return _shape(_visible_row(conn, viewer_id, copy_id))


def view_copy(
    conn: psycopg.Connection, *, viewer_id: str, copy_id: str, thumbnail_url: ThumbnailUrl | None = None
) -> dict:
    """One copy with its book, owner, holder, condition and images, if `viewer_id` may see it; else NotFound.

    `thumbnail_url(image)` turns an image (image_id, copy_id, thumbnail_key) into the URL a client fetches; the
    entry point knows how the store is reached (a presigned URL, or the API's own thumbnail route).
    """
    copy = _shape(_visible_row(conn, viewer_id, copy_id))
    images = conn.execute(
        """
        select image_id, copy_id, kind, width, height, thumbnail_key, created_at
        from media.image
        where copy_id = %s and status = 'accepted'
        order by created_at, image_id
        """,
        (copy["copy_id"],),
    ).fetchall()
    copy["images"] = [
        {
            "image_id": str(i["image_id"]),
            "kind": i["kind"],
            "width": i["width"],
            "height": i["height"],
            "created_at": i["created_at"],
            "thumbnail_url": thumbnail_url(i) if thumbnail_url and i["thumbnail_key"] else None,
        }
        for i in images
    ]
    return copy


def thumbnail_key(conn: psycopg.Connection, *, viewer_id: str, copy_id: str, image_id: str) -> str:
    """The object key of the thumbnail of one of a visible copy's images; NotFound otherwise."""
    _visible_row(conn, viewer_id, copy_id)
    row = None
    if is_uuid(image_id):
        row = conn.execute(
            "select thumbnail_key from media.image where image_id = %s and copy_id = %s and status = 'accepted'",
            (image_id, copy_id),
        ).fetchone()
    if row is None or row["thumbnail_key"] is None:
        raise NotFound(f"image {image_id} of copy {copy_id} not found")
    return row["thumbnail_key"]


# --- changing -----------------------------------------------------------------------------------------------------


def _locked(conn: psycopg.Connection, copy_id: str) -> dict:
    """The copy row, locked until the transaction ends; NotFound if there is none."""
    row = None
    if is_uuid(copy_id):
        row = conn.execute(
            "select copy_id, owner_id, current_holder_id, status from catalog.copy where copy_id = %s for update",
            (copy_id,),
        ).fetchone()
    if row is None:
        raise _not_found(copy_id)
    return row


def _owned(conn: psycopg.Connection, user_id: str, copy_id: str) -> dict:
    row = _locked(conn, copy_id)
    if str(row["owner_id"]) != user_id:
        raise _not_found(copy_id)
    return row


def clean_tags(tags: list[str]) -> list[str]:
    """Tags with whitespace collapsed, blanks and case-insensitive repeats dropped; InvalidInput over the limits."""
    out: list[str] = []
    seen: set[str] = set()
    for raw in tags:
        tag = " ".join(raw.split())
        if len(tag) > TAG_MAX_CHARS:
            raise InvalidInput(f"tag {tag[:20]!r}… is {len(tag)} characters, over the {TAG_MAX_CHARS} limit")
        if any(unicodedata.category(ch) == "Cc" for ch in tag):
            raise InvalidInput(f"tag {tag!r} contains a control character")
        if tag and tag.casefold() not in seen:
            seen.add(tag.casefold())
            out.append(tag)
    if len(out) > MAX_TAGS:
        raise InvalidInput(f"{len(out)} tags, over the {MAX_TAGS} limit")
    return out


def _clean_notes(notes: str | None) -> str | None:
    if notes is None:
        return None
    text = notes.strip()
    if len(text) > NOTES_MAX_CHARS:
        raise InvalidInput(f"notes are {len(text)} characters, over the {NOTES_MAX_CHARS} limit")
    if any(unicodedata.category(ch) == "Cc" and ch not in "\n\t" for ch in text):
        raise InvalidInput("notes contain a control character")
    return text or None


def update_copy(
    conn: psycopg.Connection,
    *,
    user_id: str,
    copy_id: str,
    notes: str | None = UNSET,
    tags: list[str] = UNSET,
    availability: str = UNSET,
    thumbnail_url: ThumbnailUrl | None = None,
) -> dict:
    """Set the owner's notes (None clears them), tags and availability; returns the copy as view_copy does.

    The owner only (anyone else: NotFound). Availability switches between `available` and `unavailable`; from any
    other status it is InvalidTransition, unless it asks for the status the copy already has.
    """
    if notes is UNSET and tags is UNSET and availability is UNSET:
        raise InvalidInput("a copy update needs at least one of notes, tags, availability")
    if availability is not UNSET and availability not in AVAILABILITY:
        raise InvalidInput(f"availability {availability!r} is not one of {', '.join(AVAILABILITY)}")
    clean_notes = _clean_notes(notes) if notes is not UNSET else UNSET
    tag_list = clean_tags(tags) if tags is not UNSET else UNSET
    with conn.transaction():
        row = _owned(conn, user_id, copy_id)
        status = row["status"]
        if availability is not UNSET and availability != status:
            if status not in AVAILABILITY:
                raise InvalidTransition(
                    f"copy {copy_id} is {status}; its availability can change only while it is available or "
                    "unavailable"
                )
            status = availability
        sets, params = ["updated_at = now()", "status = %(status)s"], {"copy": copy_id, "status": status}
        if clean_notes is not UNSET:
            sets.append("notes = %(notes)s")
            params["notes"] = clean_notes
        if tag_list is not UNSET:
            sets.append("tags = %(tags)s")
            params["tags"] = tag_list
        conn.execute(f"update catalog.copy set {', '.join(sets)} where copy_id = %(copy)s", params)
        changed = [name for name, value in (("notes", clean_notes), ("tags", tag_list), ("availability", availability))
                   if value is not UNSET]
        append_event(conn, CopyUpdated(copy_id=str(row["copy_id"]), owner_id=user_id, fields=changed))
    return view_copy(conn, viewer_id=user_id, copy_id=copy_id, thumbnail_url=thumbnail_url)


def withdraw_copy(
    conn: psycopg.Connection, *, user_id: str, copy_id: str, thumbnail_url: ThumbnailUrl | None = None
) -> dict:
    """Take the copy out of circulation for good. The owner only, while it is theirs in hand with no open request.

    From `available` or `unavailable`, held by the owner, with no pending or accepted request; anything else is
    InvalidTransition naming what stands in the way.
    """
    with conn.transaction():
        row = _owned(conn, user_id, copy_id)
        if row["status"] not in AVAILABILITY:
            raise InvalidTransition(f"copy {copy_id} is {row['status']}; only an available or unavailable copy can be "
                                    "withdrawn")
        if row["current_holder_id"] != row["owner_id"]:
            raise InvalidTransition(f"copy {copy_id} is held by someone else; withdraw it once it is back with you")
        # The exchange's table, read not written: an open request must be answered before the copy goes.
        open_requests = conn.execute(
            "select count(*) as n from exchange.request where copy_id = %s and status in ('pending', 'accepted')",
            (copy_id,),
        ).fetchone()["n"]
        if open_requests:
            raise InvalidTransition(f"copy {copy_id} has {open_requests} open request(s); answer them before "
                                    "withdrawing it")
        conn.execute(
            "update catalog.copy set status = 'withdrawn', updated_at = now() where copy_id = %s", (copy_id,)
        )
        append_event(conn, CopyWithdrawn(copy_id=str(row["copy_id"]), owner_id=user_id))
    return view_copy(conn, viewer_id=user_id, copy_id=copy_id, thumbnail_url=thumbnail_url)


def mark_copy_lost(
    conn: psycopg.Connection, *, user_id: str, copy_id: str, thumbnail_url: ThumbnailUrl | None = None
) -> dict:
    """Record that the copy is lost. The owner or the current holder; from any status but lost (InvalidTransition)."""
    with conn.transaction():
        row = _locked(conn, copy_id)
        if user_id not in (str(row["owner_id"]), str(row["current_holder_id"])):
            raise _not_found(copy_id)
        if row["status"] == "lost":
            raise InvalidTransition(f"copy {copy_id} is already lost")
        conn.execute("update catalog.copy set status = 'lost', updated_at = now() where copy_id = %s", (copy_id,))
        append_event(conn, CopyLost(copy_id=str(row["copy_id"]), reported_by=user_id))
    return view_copy(conn, viewer_id=user_id, copy_id=copy_id, thumbnail_url=thumbnail_url)
