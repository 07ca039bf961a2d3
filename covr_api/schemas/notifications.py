"""Notifications on the wire: a member's inbox, page by page, and marking read."""

from __future__ import annotations

from datetime import datetime
from typing import Literal
from uuid import UUID

from pydantic import BaseModel, Field

NotificationKind = Literal[
    "request_created", "request_accepted", "request_declined", "request_cancelled", "exchange_completed",
    "exchange_suspected", "return_started", "return_cancelled", "suspected_exchange_dismissed", "contact_request",
]


class NotificationPublic(BaseModel):
    """One notice to the signed-in member; `text` names the book and the other person."""

    notification_id: int
    kind: NotificationKind
    text: str = Field(examples=["Bob Marley asked to borrow your copy of \u201cThe Quiet Orchard\u201d."])
    is_read: bool
    created_at: datetime
    read_at: datetime | None
    copy_id: UUID | None = None
    book_id: UUID | None = None
    title: str | None = Field(default=None, description="The book's title when the event was handled")
    other_user_id: UUID | None = Field(default=None, description="The person the notice is about")
    other_name: str | None = None
    request_id: UUID | None = None
    accepted_request_id: UUID | None = Field(default=None, description="For a decline: the request accepted instead")
    exchange_id: UUID | None = None
    suspected_exchange_id: UUID | None = None
    reason: str | None = None


class NotificationsPublic(BaseModel):
    data: list[NotificationPublic]
    count: int = Field(description="How many notifications match the filter, over all pages")
    unread: int = Field(description="How many of the member's notifications are unread, whatever the filter")


class NotificationsReadAll(BaseModel):
    marked: int = Field(description="How many notifications were unread and are now read")
