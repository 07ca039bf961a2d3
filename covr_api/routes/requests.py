"""Requests for a copy: create, list, view, and the holder's accept or decline, the requester's cancel."""

from __future__ import annotations

from typing import Annotated, Literal
from uuid import UUID

from fastapi import APIRouter, Query

from covr_api.deps import CurrentUser, DbDep, IdempotencyKey
from covr_api.errors import problems
from covr_api.idempotency import respond_once
from covr_api.schemas.requests import RequestCreate, RequestPublic, RequestsPublic
from covr_core.exchange import requests

router = APIRouter(prefix="/requests", tags=["requests"])

Status = Literal["pending", "accepted", "declined", "cancelled", "completed"]


def _public(request) -> RequestPublic:
    return RequestPublic.model_validate(request)


@router.post("", status_code=201, response_model=RequestPublic, responses=problems(401, 404, 409, 422))
def create_request(body: RequestCreate, db: DbDep, user: CurrentUser, idempotency_key: IdempotencyKey = None):
    """Ask the holder of an available copy, held by an accepted contact, to lend it (borrow) or give it (keep)."""
    return respond_once(db, user=user, key=idempotency_key, route="POST /v1/requests", body=body, status_code=201,
                        work=lambda: _public(requests.create(db, requester_id=user.user_id, copy_id=str(body.copy_id),
                                                             kind=body.kind)))


@router.get("", response_model=RequestsPublic, responses=problems(401, 422))
def list_requests(
    db: DbDep,
    user: CurrentUser,
    role: Annotated[Literal["incoming", "outgoing"] | None, Query(
        description="incoming: asked of you as holder; outgoing: made by you")] = None,
    status: Status | None = None,
    copy_id: UUID | None = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    offset: Annotated[int, Query(ge=0)] = 0,
):
    """Requests you made or were asked, newest first."""
    rows, count = requests.list_for(db, user_id=user.user_id, role=role, status=status,
                                    copy_id=str(copy_id) if copy_id else None, limit=limit, offset=offset)
    return RequestsPublic(data=[_public(r) for r in rows], count=count)


@router.get("/{request_id}", response_model=RequestPublic, responses=problems(401, 404, 422))
def get_request(request_id: UUID, db: DbDep, user: CurrentUser):
    """A request you made or were asked; anyone else's answers 404."""
    return _public(requests.get(db, user_id=user.user_id, request_id=str(request_id)))


@router.post("/{request_id}/accept", response_model=RequestPublic, responses=problems(401, 404, 409, 422))
def accept_request(request_id: UUID, db: DbDep, user: CurrentUser, idempotency_key: IdempotencyKey = None):
    """The holder accepts a pending request: it becomes a hand-over in progress, and every other pending
    request for the copy is declined."""
    return respond_once(db, user=user, key=idempotency_key, route=f"POST /v1/requests/{request_id}/accept",
                        body=None, status_code=200,
                        work=lambda: _public(requests.accept(db, user_id=user.user_id, request_id=str(request_id))))


@router.post("/{request_id}/decline", response_model=RequestPublic, responses=problems(401, 404, 409, 422))
def decline_request(request_id: UUID, db: DbDep, user: CurrentUser, idempotency_key: IdempotencyKey = None):
    """The holder declines a pending request."""
    return respond_once(db, user=user, key=idempotency_key, route=f"POST /v1/requests/{request_id}/decline",
                        body=None, status_code=200,
                        work=lambda: _public(requests.decline(db, user_id=user.user_id, request_id=str(request_id))))


@router.post("/{request_id}/cancel", response_model=RequestPublic, responses=problems(401, 404, 409, 422))
def cancel_request(request_id: UUID, db: DbDep, user: CurrentUser, idempotency_key: IdempotencyKey = None):
    """The requester withdraws a pending request; once accepted, either side may cancel it, and its hand-over."""
    return respond_once(db, user=user, key=idempotency_key, route=f"POST /v1/requests/{request_id}/cancel",
                        body=None, status_code=200,
                        work=lambda: _public(requests.cancel(db, user_id=user.user_id, request_id=str(request_id))))
