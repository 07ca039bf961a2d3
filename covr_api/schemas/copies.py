"""Copies on the wire: the copy with its book, people and images, a page of them, and the owner's update."""

from __future__ import annotations

from datetime import datetime
from typing import Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

CopyStatus = Literal["available", "unavailable", "requested", "on_loan", "withdrawn", "lost"]


class BookBrief(BaseModel):
    book_id: UUID
    isbn13: str | None
    title: str
    authors: list[str]
    published_year: int | None
    language: str | None


class MemberBrief(BaseModel):
    user_id: UUID
    handle: str
    display_name: str


class ImagePublic(BaseModel):
    image_id: UUID
    kind: str
    width: int | None
    height: int | None
    created_at: datetime
    thumbnail_url: str | None = Field(
        description="A presigned URL (S3), or this API's thumbnail route (local store; send the bearer token)")


class CopySummary(BaseModel):
    copy_id: UUID
    status: CopyStatus
    condition_grade: int | None
    notes: str | None
    tags: list[str]
    created_at: datetime
    updated_at: datetime
    book: BookBrief
    owner: MemberBrief
    holder: MemberBrief


class CopyPublic(CopySummary):
    images: list[ImagePublic]


class CopiesPublic(BaseModel):
    data: list[CopySummary]
    count: int = Field(description="How many copies match the filters, over all pages")


class CopyUpdate(BaseModel):
    """Fields left out stay as they are; `notes: null` clears the notes, `tags: []` (or null) the tags."""

    model_config = ConfigDict(extra="forbid")

    notes: str | None = Field(default=None, max_length=2000)
    tags: list[str] | None = Field(default=None, max_length=50)
    availability: Literal["available", "unavailable"] | None = Field(
        default=None, description="Whether you lend it now; only while the copy is available or unavailable")
