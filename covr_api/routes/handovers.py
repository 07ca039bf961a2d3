"""Hand-overs: list and view yours, the receiver confirms receipt with a rating, either side cancels; returns."""

from __future__ import annotations

from typing import Annotated, Literal
from uuid import UUID

from fastapi import APIRouter, Query

from covr_api.deps import CurrentUser, DbDep, IdempotencyKey
from covr_api.errors import problems
from covr_api.idempotency import respond_once
from covr_api.schemas.handovers import HandoverComplete, HandoverPublic, HandoversPublic
from covr_core.exchange import handovers

router = APIRouter(prefix="/handovers", tags=["handovers"])
# A borrowed copy's return is a hand-over started on the copy itself.
returns_router = APIRouter(prefix="/copies", tags=["handovers"])


def _public(handover) -> HandoverPublic:
    return HandoverPublic.model_validate(handover)


@router.get("", response_model=HandoversPublic, responses=problems(401, 422))
def list_handovers(
    db: DbDep,
    user: CurrentUser,
    status: Literal["in_progress", "completed", "cancelled"] | None = None,
    copy_id: UUID | None = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    offset: Annotated[int, Query(ge=0)] = 0,
):
    """Hand-overs you give or receive, newest first."""
    rows, count = handovers.list_for(db, user_id=user.user_id, status=status,
                                     copy_id=str(copy_id) if copy_id else None, limit=limit, offset=offset)
    return HandoversPublic(data=[_public(h) for h in rows], count=count)


@router.get("/{handover_id}", response_model=HandoverPublic, responses=problems(401, 404, 422))
def get_handover(handover_id: UUID, db: DbDep, user: CurrentUser):
    """A hand-over you give or receive; anyone else's answers 404."""
    return _public(handovers.get(db, user_id=user.user_id, handover_id=str(handover_id)))


@router.post("/{handover_id}/complete", response_model=HandoverPublic, responses=problems(401, 404, 409, 422))
def complete_handover(handover_id: UUID, body: HandoverComplete, db: DbDep, user: CurrentUser,
                      idempotency_key: IdempotencyKey = None):
    """The receiver confirms the copy arrived and rates its condition (0..10); this alone completes the hand-over.

    In one transaction: the copy's holder (and owner, for keep) and condition grade change, the rating is
    stored, ExchangeCompleted is announced and the ledger is told. The giver does not confirm.
    """
    return respond_once(
        db, user=user, key=idempotency_key, route=f"POST /v1/handovers/{handover_id}/complete", body=body,
        status_code=200,
        work=lambda: _public(handovers.complete(db, user_id=user.user_id, handover_id=str(handover_id),
                                                condition_rating=body.condition_rating, note=body.note)),
    )


@router.post("/{handover_id}/cancel", response_model=HandoverPublic, responses=problems(401, 404, 409, 422))
def cancel_handover(handover_id: UUID, db: DbDep, user: CurrentUser, idempotency_key: IdempotencyKey = None):
    """Either side calls off a hand-over in progress; a request's hand-over cancels the request too."""
    return respond_once(
        db, user=user, key=idempotency_key, route=f"POST /v1/handovers/{handover_id}/cancel", body=None,
        status_code=200, work=lambda: _public(handovers.cancel(db, user_id=user.user_id, handover_id=str(handover_id))),
    )


@returns_router.post("/{copy_id}/return", status_code=201, response_model=HandoverPublic,
                     responses=problems(401, 404, 409, 422))
def start_return(copy_id: UUID, db: DbDep, user: CurrentUser, idempotency_key: IdempotencyKey = None):
    """Start a borrowed copy's return to its owner (its holder or its owner may); the owner confirms receipt."""
    return respond_once(
        db, user=user, key=idempotency_key, route=f"POST /v1/copies/{copy_id}/return", body=None, status_code=201,
        work=lambda: _public(handovers.start_return(db, user_id=user.user_id, copy_id=str(copy_id))),
    )
