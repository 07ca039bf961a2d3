"""The signed-in member's notifications: list them (newest first), mark one or all read."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query

from covr_api.deps import CurrentUser, DbDep, IdempotencyKey
from covr_api.errors import problems
from covr_api.idempotency import respond_once
from covr_api.schemas.notifications import NotificationPublic, NotificationsPublic, NotificationsReadAll
from covr_core.notifications import inbox
from covr_core.notifications.rules import describe

router = APIRouter(prefix="/notifications", tags=["notifications"])

NotificationId = Annotated[int, Path(ge=1, le=2**63 - 1)]


def _public(row: dict) -> NotificationPublic:
    payload = row["payload"] or {}
    fields = {k: payload.get(k) for k in NotificationPublic.model_fields if k in payload}
    return NotificationPublic(
        **fields,
        notification_id=row["notification_id"],
        kind=row["kind"],
        text=describe(row["kind"], payload),
        is_read=row["read_at"] is not None,
        created_at=row["created_at"],
        read_at=row["read_at"],
    )


@router.get("", response_model=NotificationsPublic, responses=problems(401, 422))
def list_notifications(
    db: DbDep,
    user: CurrentUser,
    unread: Annotated[bool | None, Query(description="true: unread only; false: read only; omitted: all")] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
):
    """The member's notifications, newest first, with the total for the filter and the unread count."""
    rows, count = inbox.list_for(db, user.user_id, unread=unread, limit=limit, offset=offset)
    return NotificationsPublic(data=[_public(r) for r in rows], count=count,
                               unread=inbox.unread_count(db, user.user_id))


@router.post("/read-all", response_model=NotificationsReadAll, responses=problems(401, 422))
def read_all(db: DbDep, user: CurrentUser, idempotency_key: IdempotencyKey = None):
    """Mark every unread notification read."""
    return respond_once(db, user=user, key=idempotency_key, route="POST /v1/notifications/read-all", body=None,
                        status_code=200,
                        work=lambda: NotificationsReadAll(marked=inbox.mark_all_read(db, user.user_id)))


@router.post("/{notification_id}/read", response_model=NotificationPublic, responses=problems(401, 404, 422))
def read_one(notification_id: NotificationId, db: DbDep, user: CurrentUser, idempotency_key: IdempotencyKey = None):
    """Mark one notification read; again is harmless. Another member's notification is not found."""
    return respond_once(db, user=user, key=idempotency_key, route=f"POST /v1/notifications/{notification_id}/read",
                        body=None, status_code=200,
                        work=lambda: _public(inbox.mark_read(db, user.user_id, notification_id)))
