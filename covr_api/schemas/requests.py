"""Requests on the wire: asking a contact's holder for a copy, to borrow it or to keep it."""

from __future__ import annotations

from datetime import datetime
from typing import Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field


class RequestCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    copy_id: UUID = Field(description="A copy held by one of your accepted contacts, available")
    kind: Literal["borrow", "keep"] = Field(
        default="borrow", description="borrow: the copy comes back to its owner; keep: ownership moves to you")


class RequestPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    request_id: UUID
    copy_id: UUID
    requester_id: UUID
    holder_id: UUID
    kind: Literal["borrow", "keep"]
    status: Literal["pending", "accepted", "declined", "cancelled", "completed"]
    handover_id: UUID | None = Field(description="The hand-over an accepted request became")
    created_at: datetime
    updated_at: datetime


class RequestsPublic(BaseModel):
    data: list[RequestPublic]
    count: int = Field(description="How many requests match the filters, across all pages")
