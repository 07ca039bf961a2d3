"""Who holds and owns a copy, its status and its condition: the catalog writes a hand-over needs.

Exchange decides when a copy changes hands and calls these inside its transaction; it never updates
catalog.copy itself. Every function expects the caller's open transaction and the copy locked with `lock`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import psycopg

from covr_core.shared.ids import is_uuid

# A copy whose hand-over is in progress shows `requested`: promised to someone, not available to new requests.
# `available` and `on_loan` are where a hand-over starts from and ends in.
CopyStatus = Literal["available", "requested", "on_loan", "withdrawn", "lost"]


@dataclass(frozen=True)
class Custody:
    copy_id: str
    book_id: str
    owner_id: str
    holder_id: str
    status: str
    condition_grade: int | None


class CustodyChanged(RuntimeError):
    """The copy was not in the state the caller locked and checked: a bug in the caller, not a user error."""


def lock(conn: psycopg.Connection, copy_id: str, *, share: bool = False) -> Custody | None:
    """Lock the copy row until the transaction ends and read its custody; None when there is no such copy.

    Take it first in a transaction, before reading the requests or hand-overs it protects. `share` lets
    several requests for one copy be created at once while still waiting for (and seeing) an acceptance.
    """
    if not is_uuid(copy_id):
        return None
    row = conn.execute(
        f"""
        select copy_id, book_id, owner_id, current_holder_id, status, condition_grade
        from catalog.copy where copy_id = %s
        for {"share" if share else "update"}
        """,
        (copy_id,),
    ).fetchone()
    return _custody(row) if row else None


def set_status(conn: psycopg.Connection, copy_id: str, status: CopyStatus, *, expected: CopyStatus) -> None:
    """Move the copy from `expected` to `status` (a hand-over starts or is called off)."""
    changed = conn.execute(
        "update catalog.copy set status = %s, updated_at = now() where copy_id = %s and status = %s",
        (status, copy_id, expected),
    ).rowcount
    if changed != 1:
        raise CustodyChanged(f"copy {copy_id} is not {expected}; cannot make it {status}")


def hand_over(
    conn: psycopg.Connection,
    copy_id: str,
    *,
    from_user_id: str,
    to_user_id: str,
    transfer_ownership: bool,
    status: CopyStatus,
    condition_grade: int | None,
) -> Custody:
    """The copy is now held (and, with `transfer_ownership`, owned) by `to_user_id`, with the rated condition.

    A condition of None keeps the grade the copy had: nobody rated it.
    """
    row = conn.execute(
        """
        update catalog.copy
        set current_holder_id = %(to)s,
            owner_id = case when %(transfer)s then %(to)s else owner_id end,
            status = %(status)s,
            condition_grade = coalesce(%(grade)s, condition_grade),
            updated_at = now()
        where copy_id = %(copy)s and current_holder_id = %(from)s
        returning copy_id, book_id, owner_id, current_holder_id, status, condition_grade
        """,
        {"to": to_user_id, "transfer": transfer_ownership, "status": status, "grade": condition_grade,
         "copy": copy_id, "from": from_user_id},
    ).fetchone()
    if row is None:
        raise CustodyChanged(f"copy {copy_id} is not held by {from_user_id}; cannot hand it to {to_user_id}")
    return _custody(row)


def _custody(row) -> Custody:
    return Custody(
        copy_id=str(row["copy_id"]),
        book_id=str(row["book_id"]),
        owner_id=str(row["owner_id"]),
        holder_id=str(row["current_holder_id"]),
        status=row["status"],
        condition_grade=row["condition_grade"],
    )
