"""Hand-overs on the wire: a copy passing between two members, confirmed by the receiver with a rating."""

from __future__ import annotations

from datetime import datetime
from typing import Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

ConditionRating = Field(ge=0, le=10, description="The copy's condition as received: 0 unusable .. 10 as new")


class HandoverComplete(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    condition_rating: int = ConditionRating
    note: str | None = Field(default=None, max_length=2000)


class HandoverPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    handover_id: UUID = Field(description="The `exchange_id` of ExchangeAccepted and ExchangeCompleted")
    copy_id: UUID
    kind: Literal["borrow", "keep", "return"]
    origin: Literal["request", "suspected", "return"]
    status: Literal["in_progress", "completed", "cancelled"]
    from_user_id: UUID
    to_user_id: UUID
    request_id: UUID | None
    suspected_exchange_id: UUID | None
    condition_rating: int | None
    created_at: datetime
    completed_at: datetime | None
    cancelled_at: datetime | None
    cancelled_by: UUID | None


class HandoversPublic(BaseModel):
    data: list[HandoverPublic]
    count: int = Field(description="How many hand-overs match the filters, across all pages")
