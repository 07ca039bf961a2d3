"""Uploads on the wire: asking for a presigned URL, the receipt of an upload, and what ingest made of it."""

from __future__ import annotations

from datetime import datetime
from typing import Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field


class UploadCreate(BaseModel):
    """With an S3 store: the photo's type, signed into the PUT URL. (With the local store the body is the file.)"""

    model_config = ConfigDict(extra="forbid")

    content_type: Literal["image/jpeg", "image/png", "image/webp", "image/heic", "image/heif"]


class UploadPublic(BaseModel):
    """An upload just made. `upload_url` (S3 only): PUT the photo there with `upload_headers` before `expires_at`."""

    upload_id: UUID = Field(description="Names the object key: uploads/{your user id}/{upload_id}.{ext}")
    object_key: str
    method: Literal["direct", "presigned"]
    content_type: str
    byte_size: int | None
    created_at: datetime
    status: Literal["pending"]
    upload_url: str | None
    upload_headers: dict[str, str]
    expires_at: datetime | None


class UploadBook(BaseModel):
    book_id: UUID
    isbn13: str | None
    title: str
    authors: list[str]
    published_year: int | None


class UploadStatusPublic(BaseModel):
    """Where ingest stands with an upload.

    `pending`: not ingested yet (or not yet decided); `accepted`: decided, see `decision` and `book`; `rejected`:
    the file is bad, see `reason` (final); `failed`: ingest could not process it now, see `reason` (retried).
    """

    upload_id: UUID
    object_key: str
    method: Literal["direct", "presigned"]
    content_type: str
    byte_size: int | None
    created_at: datetime
    status: Literal["pending", "accepted", "rejected", "failed"]
    reason: str | None
    image_id: UUID | None
    decision: Literal["new_book", "new_copy", "existing_copy", "exchange_suspected", "ignore"] | None
    match_reason: Literal["exact_hash", "phash_match", "embedding_similarity", "none"] | None
    identification_source: Literal["isbn", "ocr", "embedding"] | None
    confidence: float | None
    book: UploadBook | None
    copy_id: UUID | None
