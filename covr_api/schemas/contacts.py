"""Contacts on the wire: invitations, the links a member sees, and member search results."""

from __future__ import annotations

from datetime import datetime
from typing import Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

LinkStatus = Literal["pending", "accepted", "blocked"]
Direction = Literal["incoming", "outgoing"]


class ContactInvite(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    handle: str = Field(min_length=1, max_length=63, description="The handle of the member to invite",
                        examples=["bob"])


class ContactPublic(BaseModel):
    """A link as the signed-in member sees it: the other member, its status and which way it points.

    `outgoing` pending: you invited them; `incoming` pending: they invited you. `blocked` is always your own
    block (a block against you is not shown anywhere).
    """

    user_id: UUID
    handle: str
    display_name: str
    status: LinkStatus
    direction: Direction
    created_at: datetime
    accepted_at: datetime | None


class ContactsPublic(BaseModel):
    data: list[ContactPublic]
    count: int = Field(description="How many links match the filters, over all pages")


class MemberMatch(BaseModel):
    """A member found by search, with your link to them (null status: none yet, so you can invite)."""

    user_id: UUID
    handle: str
    display_name: str
    status: LinkStatus | None
    direction: Direction | None


class MemberMatchesPublic(BaseModel):
    data: list[MemberMatch]
    count: int
