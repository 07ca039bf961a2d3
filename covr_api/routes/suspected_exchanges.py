"""Suspected exchanges from ingest: both sides see them, either confirms (a completed hand-over) or dismisses."""

from __future__ import annotations

from typing import Annotated, Literal
from uuid import UUID

from fastapi import APIRouter, Query

from covr_api.deps import CurrentUser, DbDep, IdempotencyKey
from covr_api.errors import problems
from covr_api.idempotency import respond_once
from covr_api.schemas.suspected_exchanges import (
    SuspectedExchangeConfirm, SuspectedExchangePublic, SuspectedExchangesPublic,
)
from covr_core.exchange import suspected

router = APIRouter(prefix="/suspected-exchanges", tags=["suspected-exchanges"])


def _public(row) -> SuspectedExchangePublic:
    return SuspectedExchangePublic.model_validate(row)


@router.get("", response_model=SuspectedExchangesPublic, responses=problems(401, 422))
def list_suspected_exchanges(
    db: DbDep,
    user: CurrentUser,
    status: Literal["pending", "confirmed", "dismissed"] | None = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    offset: Annotated[int, Query(ge=0)] = 0,
):
    """Suspicions raised by your photos, or about copies you hold, newest first."""
    rows, count = suspected.list_for(db, user_id=user.user_id, status=status, limit=limit, offset=offset)
    return SuspectedExchangesPublic(data=[_public(s) for s in rows], count=count)


@router.get("/{suspected_exchange_id}", response_model=SuspectedExchangePublic, responses=problems(401, 404, 422))
def get_suspected_exchange(suspected_exchange_id: UUID, db: DbDep, user: CurrentUser):
    return _public(suspected.get(db, user_id=user.user_id, suspected_exchange_id=str(suspected_exchange_id)))


@router.post("/{suspected_exchange_id}/confirm", response_model=SuspectedExchangePublic,
             responses=problems(401, 404, 409, 422))
def confirm_suspected_exchange(suspected_exchange_id: UUID, db: DbDep, user: CurrentUser,
                               body: SuspectedExchangeConfirm | None = None, idempotency_key: IdempotencyKey = None):
    """Yes, the copy went to the uploader: a hand-over from the holder, completed now (kind keep when the holder
    owns the copy, borrow when the holder had it on loan). Only the uploader may give a condition rating."""
    body = body or SuspectedExchangeConfirm()
    return respond_once(
        db, user=user, key=idempotency_key, route=f"POST /v1/suspected-exchanges/{suspected_exchange_id}/confirm",
        body=body, status_code=200,
        work=lambda: _public(suspected.confirm(db, user_id=user.user_id,
                                               suspected_exchange_id=str(suspected_exchange_id),
                                               condition_rating=body.condition_rating, note=body.note)),
    )


@router.post("/{suspected_exchange_id}/dismiss", response_model=SuspectedExchangePublic,
             responses=problems(401, 404, 409, 422))
def dismiss_suspected_exchange(suspected_exchange_id: UUID, db: DbDep, user: CurrentUser,
                               idempotency_key: IdempotencyKey = None):
    """No, nothing changed hands."""
    return respond_once(
        db, user=user, key=idempotency_key, route=f"POST /v1/suspected-exchanges/{suspected_exchange_id}/dismiss",
        body=None, status_code=200,
        work=lambda: _public(suspected.dismiss(db, user_id=user.user_id,
                                               suspected_exchange_id=str(suspected_exchange_id))),
    )
