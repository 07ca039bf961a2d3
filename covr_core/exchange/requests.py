"""Requests for a copy: a member asks its holder to borrow it (it comes back to its owner) or to keep it.

    pending ──accept (holder)──► accepted ──hand-over completed──► completed
       │ └─decline (holder)──► declined        └─cancel (either side)──► cancelled
       └──cancel (requester)──► cancelled

Accepting one request declines every other pending request for the copy, each with its own RequestDeclined,
and turns the accepted one into a hand-over in progress (handovers.py). Each step and its event are one
transaction; the copy row is locked first, so concurrent accepts of one copy queue and exactly one wins.

Who may see a request: its requester and its holder. Anyone else gets NotFound, exactly as for a request that
does not exist. A party taking the other side's step (the requester accepting) is an invalid transition.
"""

from __future__ import annotations

from typing import Literal

import psycopg

from covr_core.catalog import copies, custody
from covr_core.exchange import handovers
from covr_core.exchange import _repository as repo
from covr_core.exchange._repository import Request
from covr_core.ledger import hooks
from covr_core.shared.errors import Conflict, InvalidInput, InvalidTransition, NotFound
from covr_core.shared.events import RequestCancelled, RequestCreated, RequestDeclined
from covr_core.shared.outbox import append_event

RequestKind = Literal["borrow", "keep"]
KINDS: tuple[str, ...] = RequestKind.__args__
OPEN = ("pending", "accepted")


def create(conn: psycopg.Connection, *, requester_id: str, copy_id: str, kind: RequestKind = "borrow") -> Request:
    """Ask the holder of a copy held by an accepted contact for it; the copy must be available.

    A copy the requester cannot see (not held by an accepted contact) is NotFound, like a missing one.
    """
    if kind not in KINDS:
        raise InvalidInput(f"request kind {kind!r} is not one of {', '.join(KINDS)}", field="kind")
    try:
        with conn.transaction():
            # A share lock: many requests for one copy go in at once, but none slips past an acceptance.
            copy = custody.lock(conn, copy_id, share=True)
            if copy is None or not copies.is_visible(conn, requester_id, copy_id):
                raise NotFound(f"copy {copy_id} not found")
            if copy.holder_id == requester_id:
                raise InvalidInput(f"you hold copy {copy_id}; a request goes to someone else's copy", field="copy_id")
            if copy.status != "available":
                raise InvalidTransition(f"copy {copy_id} is {copy.status}, not available to request")
            if kind == "keep" and copy.owner_id != copy.holder_id:
                raise InvalidTransition(f"copy {copy_id} is lent to its holder; only its owner could give it away")
            existing = repo.open_request_of(conn, copy_id, requester_id)
            if existing is not None:
                raise Conflict(f"you already have an open request {existing.request_id} for copy {copy_id}",
                               request_id=existing.request_id)
            request = repo.insert_request(conn, copy_id=copy_id, requester_id=requester_id,
                                          holder_id=copy.holder_id, kind=kind)
            append_event(conn, RequestCreated(request_id=request.request_id, requester_id=requester_id,
                                              copy_id=copy_id, current_holder_id=copy.holder_id))
            hooks.on_request_created(conn, request_id=request.request_id, copy_id=copy_id,
                                     requester_id=requester_id, holder_id=copy.holder_id, kind=kind)
            return request
    except psycopg.errors.UniqueViolation as exc:
        # Two requests by one member raced past the check: the partial unique index has the last word.
        raise Conflict(f"you already have an open request for copy {copy_id}") from exc


def get(conn: psycopg.Connection, *, user_id: str, request_id: str) -> Request:
    request = repo.get_request(conn, request_id)
    if request is None or not request.party(user_id):
        raise NotFound(f"request {request_id} not found")
    return request


def list_for(conn: psycopg.Connection, *, user_id: str, role: Literal["incoming", "outgoing"] | None = None,
             status: str | None = None, copy_id: str | None = None, limit: int = 50,
             offset: int = 0) -> tuple[list[Request], int]:
    if role not in (None, "incoming", "outgoing"):
        raise InvalidInput(f"request role {role!r} is not incoming or outgoing", field="role")
    return repo.list_requests(conn, user_id=user_id, role=role, status=status, copy_id=copy_id, limit=limit,
                              offset=offset)


def accept(conn: psycopg.Connection, *, user_id: str, request_id: str) -> Request:
    """The holder accepts: a hand-over starts, and every other pending request for the copy is declined."""
    with conn.transaction():
        request, copy = _lock(conn, user_id, request_id)
        if user_id != request.holder_id:
            raise InvalidTransition(f"request {request_id} is accepted by the copy's holder, not by its requester")
        _require(request, "pending", "accepted")
        if copy.holder_id != request.holder_id or copy.status != "available":
            raise InvalidTransition(f"copy {copy.copy_id} is {copy.status} and no longer available; "
                                    f"request {request_id} cannot be accepted")
        repo.set_request_status(conn, request_id, "accepted")
        handover_id = handovers.start_from_request(conn, request, copy)
        hooks.on_request_accepted(conn, request_id=request_id, copy_id=request.copy_id,
                                  requester_id=request.requester_id, holder_id=request.holder_id,
                                  kind=request.kind, exchange_id=handover_id)
        for other in repo.pending_requests_for_copy(conn, copy.copy_id):
            repo.set_request_status(conn, other.request_id, "declined")
            append_event(conn, RequestDeclined(request_id=other.request_id, requester_id=other.requester_id,
                                               copy_id=other.copy_id, current_holder_id=other.holder_id,
                                               accepted_request_id=request_id))
            hooks.on_request_declined(conn, request_id=other.request_id, copy_id=other.copy_id,
                                      requester_id=other.requester_id, holder_id=other.holder_id,
                                      accepted_request_id=request_id)
        return repo.get_request(conn, request_id)


def decline(conn: psycopg.Connection, *, user_id: str, request_id: str) -> Request:
    """The holder says no to a pending request."""
    with conn.transaction():
        request, _ = _lock(conn, user_id, request_id)
        if user_id != request.holder_id:
            raise InvalidTransition(f"request {request_id} is declined by the copy's holder; "
                                    f"its requester cancels it instead")
        _require(request, "pending", "declined")
        repo.set_request_status(conn, request_id, "declined")
        append_event(conn, RequestDeclined(request_id=request_id, requester_id=request.requester_id,
                                           copy_id=request.copy_id, current_holder_id=request.holder_id))
        hooks.on_request_declined(conn, request_id=request_id, copy_id=request.copy_id,
                                  requester_id=request.requester_id, holder_id=request.holder_id)
        return repo.get_request(conn, request_id)


def cancel(conn: psycopg.Connection, *, user_id: str, request_id: str) -> Request:
    """The requester withdraws an open request; once accepted, either side may call the hand-over off."""
    with conn.transaction():
        request, copy = _lock(conn, user_id, request_id)
        if request.status == "pending":
            if user_id != request.requester_id:
                raise InvalidTransition(f"request {request_id} is pending: its holder declines it, "
                                        f"only its requester cancels it")
            repo.set_request_status(conn, request_id, "cancelled")
            append_event(conn, RequestCancelled(request_id=request_id, requester_id=request.requester_id,
                                                copy_id=request.copy_id, current_holder_id=request.holder_id,
                                                cancelled_by=user_id))
            hooks.on_request_cancelled(conn, request_id=request_id, copy_id=request.copy_id,
                                       requester_id=request.requester_id, holder_id=request.holder_id,
                                       cancelled_by=user_id, was="pending")
        elif request.status == "accepted":
            handover = repo.handover_of_request(conn, request_id, lock=True)
            if handover is not None:
                handovers.cancel_request_handover(conn, request, handover, copy, cancelled_by=user_id)
            else:  # accepted before hand-overs were recorded (written in SQL): nothing else to undo
                repo.set_request_status(conn, request_id, "cancelled")
                append_event(conn, RequestCancelled(request_id=request_id, requester_id=request.requester_id,
                                                    copy_id=request.copy_id, current_holder_id=request.holder_id,
                                                    cancelled_by=user_id))
                hooks.on_request_cancelled(conn, request_id=request_id, copy_id=request.copy_id,
                                           requester_id=request.requester_id, holder_id=request.holder_id,
                                           cancelled_by=user_id, was="accepted")
        else:
            raise InvalidTransition(f"request {request_id} is {request.status}; only an open request can be cancelled")
        return repo.get_request(conn, request_id)


def _lock(conn: psycopg.Connection, user_id: str, request_id: str):
    """Lock the copy, then the request; NotFound unless the user is its requester or holder."""
    copy_id = repo.request_copy_id(conn, request_id)
    copy = custody.lock(conn, copy_id) if copy_id else None
    request = repo.get_request(conn, request_id, lock=True) if copy else None
    if request is None or not request.party(user_id):
        raise NotFound(f"request {request_id} not found")
    return request, copy


def _require(request: Request, status: str, step: str) -> None:
    if request.status != status:
        raise InvalidTransition(f"request {request.request_id} is {request.status}; only a {status} request "
                                f"can be {step}")
