"""Rows of the exchange schema: requests, hand-overs (exchange.exchange), ratings and suspected exchanges.

Plain SQL, no policy: the services in requests.py, handovers.py and suspected.py decide, this reads and writes.
Every `lock_*` takes a row lock until the transaction ends; callers lock the copy first (catalog.custody.lock),
then these rows, so two transactions never wait on each other in opposite orders.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import psycopg

from covr_core.shared.ids import is_uuid


@dataclass(frozen=True)
class Request:
    request_id: str
    copy_id: str
    requester_id: str
    holder_id: str
    kind: str  # borrow | keep
    status: str  # pending | accepted | declined | cancelled | completed
    created_at: datetime
    updated_at: datetime
    handover_id: str | None = None  # the hand-over an accepted request became

    def party(self, user_id: str) -> bool:
        return user_id in (self.requester_id, self.holder_id)


@dataclass(frozen=True)
class Handover:
    """One row of exchange.exchange; `handover_id` is the `exchange_id` of the events."""

    handover_id: str
    copy_id: str
    kind: str  # borrow | keep | return
    origin: str  # request | suspected | return
    status: str  # in_progress | completed | cancelled
    from_user_id: str
    to_user_id: str
    request_id: str | None
    suspected_exchange_id: str | None
    condition_rating: int | None
    created_at: datetime
    completed_at: datetime | None
    cancelled_at: datetime | None
    cancelled_by: str | None

    def party(self, user_id: str) -> bool:
        return user_id in (self.from_user_id, self.to_user_id)


@dataclass(frozen=True)
class Suspected:
    suspected_exchange_id: str
    image_id: str
    copy_id: str
    uploader_id: str
    holder_id: str
    status: str  # pending | confirmed | dismissed
    handover_id: str | None
    decided_by: str | None
    decided_at: datetime | None
    created_at: datetime

    def party(self, user_id: str) -> bool:
        return user_id in (self.uploader_id, self.holder_id)


def _s(value) -> str | None:
    return None if value is None else str(value)


# ---- requests -------------------------------------------------------------------------------------------------

_REQUEST = """
    select r.request_id, r.copy_id, r.requester_id, r.holder_id, r.kind, r.status, r.created_at, r.updated_at,
           (select e.exchange_id from exchange.exchange e where e.request_id = r.request_id) as handover_id
    from exchange.request r
"""


def _request(row) -> Request:
    return Request(
        request_id=str(row["request_id"]), copy_id=str(row["copy_id"]), requester_id=str(row["requester_id"]),
        holder_id=str(row["holder_id"]), kind=row["kind"], status=row["status"], created_at=row["created_at"],
        updated_at=row["updated_at"], handover_id=_s(row["handover_id"]),
    )


def request_copy_id(conn: psycopg.Connection, request_id: str) -> str | None:
    """The copy a request is for (it never changes), read before locking that copy."""
    if not is_uuid(request_id):
        return None
    row = conn.execute("select copy_id from exchange.request where request_id = %s", (request_id,)).fetchone()
    return _s(row["copy_id"]) if row else None


def get_request(conn: psycopg.Connection, request_id: str, *, lock: bool = False) -> Request | None:
    if not is_uuid(request_id):
        return None
    row = conn.execute(_REQUEST + " where r.request_id = %s" + (" for update of r" if lock else ""),
                       (request_id,)).fetchone()
    return _request(row) if row else None


def open_request_of(conn: psycopg.Connection, copy_id: str, requester_id: str) -> Request | None:
    row = conn.execute(
        _REQUEST + " where r.copy_id = %s and r.requester_id = %s and r.status in ('pending', 'accepted')",
        (copy_id, requester_id),
    ).fetchone()
    return _request(row) if row else None


def pending_requests_for_copy(conn: psycopg.Connection, copy_id: str) -> list[Request]:
    rows = conn.execute(_REQUEST + " where r.copy_id = %s and r.status = 'pending' "
                        "order by r.created_at, r.request_id for update of r", (copy_id,)).fetchall()
    return [_request(r) for r in rows]


def insert_request(conn: psycopg.Connection, *, copy_id: str, requester_id: str, holder_id: str, kind: str) -> Request:
    row = conn.execute(
        """
        insert into exchange.request (copy_id, requester_id, holder_id, kind) values (%s, %s, %s, %s)
        returning request_id, copy_id, requester_id, holder_id, kind, status, created_at, updated_at,
                  null::uuid as handover_id
        """,
        (copy_id, requester_id, holder_id, kind),
    ).fetchone()
    return _request(row)


def set_request_status(conn: psycopg.Connection, request_id: str, status: str) -> None:
    conn.execute("update exchange.request set status = %s, updated_at = now() where request_id = %s",
                 (status, request_id))


def list_requests(conn: psycopg.Connection, *, user_id: str, role: str | None, status: str | None,
                  copy_id: str | None, limit: int, offset: int) -> tuple[list[Request], int]:
    """Requests the user made (`outgoing`) or was asked (`incoming`), newest first, and how many match."""
    where = {"incoming": "r.holder_id = %(user)s", "outgoing": "r.requester_id = %(user)s",
             None: "(r.holder_id = %(user)s or r.requester_id = %(user)s)"}[role]
    params = {"user": user_id, "status": status, "copy": copy_id, "limit": limit, "offset": offset}
    filters = f"""
        where {where}
          and (%(status)s::text is null or r.status = %(status)s)
          and (%(copy)s::uuid is null or r.copy_id = %(copy)s)
    """
    rows = conn.execute(_REQUEST + filters + " order by r.created_at desc, r.request_id "
                        "limit %(limit)s offset %(offset)s", params).fetchall()
    count = conn.execute("select count(*) as n from exchange.request r" + filters, params).fetchone()["n"]
    return [_request(r) for r in rows], count


# ---- hand-overs -----------------------------------------------------------------------------------------------

_HANDOVER = """
    select e.exchange_id, e.copy_id, e.kind, e.origin, e.status, e.from_user_id, e.to_user_id, e.request_id,
           (select s.suspected_exchange_id from exchange.suspected_exchange s
            where s.exchange_id = e.exchange_id) as suspected_exchange_id,
           (select d.rating from exchange.degradation_rating d
            where d.exchange_id = e.exchange_id and d.rated_by = e.to_user_id) as condition_rating,
           e.created_at, e.completed_at, e.cancelled_at, e.cancelled_by
    from exchange.exchange e
"""


def _handover(row) -> Handover:
    return Handover(
        handover_id=str(row["exchange_id"]), copy_id=str(row["copy_id"]), kind=row["kind"], origin=row["origin"],
        status=row["status"], from_user_id=str(row["from_user_id"]), to_user_id=str(row["to_user_id"]),
        request_id=_s(row["request_id"]), suspected_exchange_id=_s(row["suspected_exchange_id"]),
        condition_rating=row["condition_rating"], created_at=row["created_at"], completed_at=row["completed_at"],
        cancelled_at=row["cancelled_at"], cancelled_by=_s(row["cancelled_by"]),
    )


def handover_copy_id(conn: psycopg.Connection, handover_id: str) -> str | None:
    if not is_uuid(handover_id):
        return None
    row = conn.execute("select copy_id from exchange.exchange where exchange_id = %s", (handover_id,)).fetchone()
    return _s(row["copy_id"]) if row else None


def get_handover(conn: psycopg.Connection, handover_id: str, *, lock: bool = False) -> Handover | None:
    if not is_uuid(handover_id):
        return None
    row = conn.execute(_HANDOVER + " where e.exchange_id = %s" + (" for update of e" if lock else ""),
                       (handover_id,)).fetchone()
    return _handover(row) if row else None


def handover_of_request(conn: psycopg.Connection, request_id: str, *, lock: bool = False) -> Handover | None:
    row = conn.execute(_HANDOVER + " where e.request_id = %s" + (" for update of e" if lock else ""),
                       (request_id,)).fetchone()
    return _handover(row) if row else None


def handover_in_progress(conn: psycopg.Connection, copy_id: str) -> Handover | None:
    row = conn.execute(_HANDOVER + " where e.copy_id = %s and e.status = 'in_progress' for update of e",
                       (copy_id,)).fetchone()
    return _handover(row) if row else None


def insert_handover(conn: psycopg.Connection, *, copy_id: str, kind: str, origin: str, from_user_id: str,
                    to_user_id: str, request_id: str | None = None) -> str:
    row = conn.execute(
        """
        insert into exchange.exchange (copy_id, kind, origin, from_user_id, to_user_id, request_id)
        values (%s, %s, %s, %s, %s, %s) returning exchange_id
        """,
        (copy_id, kind, origin, from_user_id, to_user_id, request_id),
    ).fetchone()
    return str(row["exchange_id"])


def complete_handover(conn: psycopg.Connection, handover_id: str) -> datetime:
    return conn.execute(
        "update exchange.exchange set status = 'completed', completed_at = now() where exchange_id = %s "
        "returning completed_at",
        (handover_id,),
    ).fetchone()["completed_at"]


def cancel_handover(conn: psycopg.Connection, handover_id: str, *, cancelled_by: str) -> None:
    conn.execute(
        "update exchange.exchange set status = 'cancelled', cancelled_at = now(), cancelled_by = %s "
        "where exchange_id = %s",
        (cancelled_by, handover_id),
    )


def insert_rating(conn: psycopg.Connection, *, handover_id: str, copy_id: str, rated_by: str, rating: int,
                  note: str | None) -> None:
    conn.execute(
        "insert into exchange.degradation_rating (exchange_id, copy_id, rated_by, rating, note) "
        "values (%s, %s, %s, %s, %s)",
        (handover_id, copy_id, rated_by, rating, note),
    )


def list_handovers(conn: psycopg.Connection, *, user_id: str, status: str | None, copy_id: str | None,
                   limit: int, offset: int) -> tuple[list[Handover], int]:
    """Hand-overs the user gives or receives, newest first, and how many match."""
    params = {"user": user_id, "status": status, "copy": copy_id, "limit": limit, "offset": offset}
    filters = """
        where (e.from_user_id = %(user)s or e.to_user_id = %(user)s)
          and (%(status)s::text is null or e.status = %(status)s)
          and (%(copy)s::uuid is null or e.copy_id = %(copy)s)
    """
    rows = conn.execute(_HANDOVER + filters + " order by e.created_at desc, e.exchange_id "
                        "limit %(limit)s offset %(offset)s", params).fetchall()
    count = conn.execute("select count(*) as n from exchange.exchange e" + filters, params).fetchone()["n"]
    return [_handover(r) for r in rows], count


# ---- suspected exchanges --------------------------------------------------------------------------------------

_SUSPECTED = """
    select s.suspected_exchange_id, s.image_id, s.copy_id, s.uploader_id, s.holder_id, s.status, s.exchange_id,
           s.decided_by, s.decided_at, s.created_at
    from exchange.suspected_exchange s
"""


def _suspected(row) -> Suspected:
    return Suspected(
        suspected_exchange_id=str(row["suspected_exchange_id"]), image_id=str(row["image_id"]),
        copy_id=str(row["copy_id"]), uploader_id=str(row["uploader_id"]), holder_id=str(row["holder_id"]),
        status=row["status"], handover_id=_s(row["exchange_id"]), decided_by=_s(row["decided_by"]),
        decided_at=row["decided_at"], created_at=row["created_at"],
    )


def insert_suspected(conn: psycopg.Connection, *, image_id: str, copy_id: str, uploader_id: str,
                     holder_id: str) -> str | None:
    """The new suspicion's id, or None when this image already raised one (a re-run)."""
    row = conn.execute(
        """
        insert into exchange.suspected_exchange (image_id, copy_id, uploader_id, holder_id)
        values (%s, %s, %s, %s) on conflict (image_id) do nothing
        returning suspected_exchange_id
        """,
        (image_id, copy_id, uploader_id, holder_id),
    ).fetchone()
    return _s(row["suspected_exchange_id"]) if row else None


def suspected_copy_id(conn: psycopg.Connection, suspected_exchange_id: str) -> str | None:
    if not is_uuid(suspected_exchange_id):
        return None
    row = conn.execute("select copy_id from exchange.suspected_exchange where suspected_exchange_id = %s",
                       (suspected_exchange_id,)).fetchone()
    return _s(row["copy_id"]) if row else None


def get_suspected(conn: psycopg.Connection, suspected_exchange_id: str, *, lock: bool = False) -> Suspected | None:
    if not is_uuid(suspected_exchange_id):
        return None
    row = conn.execute(_SUSPECTED + " where s.suspected_exchange_id = %s" + (" for update of s" if lock else ""),
                       (suspected_exchange_id,)).fetchone()
    return _suspected(row) if row else None


def decide_suspected(conn: psycopg.Connection, suspected_exchange_id: str, *, status: str, decided_by: str,
                     handover_id: str | None = None) -> None:
    conn.execute(
        "update exchange.suspected_exchange set status = %s, decided_by = %s, decided_at = now(), exchange_id = %s "
        "where suspected_exchange_id = %s",
        (status, decided_by, handover_id, suspected_exchange_id),
    )


def list_suspected(conn: psycopg.Connection, *, user_id: str, status: str | None, limit: int,
                   offset: int) -> tuple[list[Suspected], int]:
    """Suspicions the user raised (by a photo) or is asked about (as holder), newest first."""
    params = {"user": user_id, "status": status, "limit": limit, "offset": offset}
    filters = """
        where (s.uploader_id = %(user)s or s.holder_id = %(user)s)
          and (%(status)s::text is null or s.status = %(status)s)
    """
    rows = conn.execute(_SUSPECTED + filters + " order by s.created_at desc, s.suspected_exchange_id "
                        "limit %(limit)s offset %(offset)s", params).fetchall()
    count = conn.execute("select count(*) as n from exchange.suspected_exchange s" + filters, params).fetchone()["n"]
    return [_suspected(r) for r in rows], count
