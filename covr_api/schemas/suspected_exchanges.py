"""Suspected exchanges on the wire: a photo suggesting a copy changed hands, for either side to confirm or dismiss."""

from __future__ import annotations

from datetime import datetime
from typing import Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field


class SuspectedExchangeConfirm(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    condition_rating: int | None = Field(
        default=None, ge=0, le=10, description="Only the uploader, who has the copy, rates it: 0 .. 10")
    note: str | None = Field(default=None, max_length=2000)


class SuspectedExchangePublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    suspected_exchange_id: UUID
    image_id: UUID
    copy_id: UUID
    uploader_id: UUID
    holder_id: UUID
    status: Literal["pending", "confirmed", "dismissed"]
    handover_id: UUID | None = Field(description="The completed hand-over a confirmation became")
    decided_by: UUID | None
    decided_at: datetime | None
    created_at: datetime


class SuspectedExchangesPublic(BaseModel):
    data: list[SuspectedExchangePublic]
    count: int
