"""Event contracts written to the outbox: field names and types follow the design document."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, field_serializer, field_validator

Decision = Literal["new_book", "new_copy", "existing_copy", "exchange_suspected", "ignore"]
MatchReason = Literal["exact_hash", "phash_match", "embedding_similarity", "none"]
IdentificationSource = Literal["isbn", "ocr", "embedding"]

DECISIONS: tuple[str, ...] = Decision.__args__
MATCH_REASONS: tuple[str, ...] = MatchReason.__args__
SOURCES: tuple[str, ...] = IdentificationSource.__args__


def utc_now() -> datetime:
    return datetime.now(UTC)


class Event(BaseModel):
    """Base of every contract: uuids travel as strings, timestamps as ISO 8601 in UTC."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    timestamp: datetime = Field(default_factory=utc_now)

    @field_validator("*", mode="before")
    @classmethod
    def _uuid_to_str(cls, value):
        return str(value) if isinstance(value, UUID) else value

    @field_validator("timestamp")
    @classmethod
    def _require_utc(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("timestamp must be timezone-aware")
        return value.astimezone(UTC)

    @field_serializer("timestamp")
    def _iso_utc(self, value: datetime) -> str:
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")

    @property
    def type(self) -> str:
        return self.event


class ImageUploaded(Event):
    event: Literal["ImageUploaded"] = "ImageUploaded"
    image_id: str
    uploader_id: str
    object_key: str
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    phash: int = Field(ge=-(2**63), lt=2**63)


class BookIdentified(Event):
    event: Literal["BookIdentified"] = "BookIdentified"
    image_id: str
    run_id: str
    book_id: str | None
    confidence: float = Field(ge=0, le=1)
    source: IdentificationSource


class DedupResolved(Event):
    event: Literal["DedupResolved"] = "DedupResolved"
    image_id: str
    decision: Decision
    matched_copy_id: str | None = None
    matched_image_id: str | None = None
    reason: MatchReason


class RequestCreated(Event):
    event: Literal["RequestCreated"] = "RequestCreated"
    request_id: str
    requester_id: str
    copy_id: str
    current_holder_id: str


class ExchangeAccepted(Event):
    event: Literal["ExchangeAccepted"] = "ExchangeAccepted"
    exchange_id: str
    request_id: str
    copy_id: str
    from_user_id: str
    to_user_id: str


class ExchangeCompleted(Event):
    event: Literal["ExchangeCompleted"] = "ExchangeCompleted"
    exchange_id: str
    copy_id: str
    from_user_id: str
    to_user_id: str
    # The receiver's condition rating, 0 (unusable) to 10 (as new); None when nobody rated it.
    degradation_rating: int | None = Field(default=None, ge=0, le=10)


class ExchangeSuspected(Event):
    """A photo looks like a copy someone else holds: the holder is asked to confirm or dismiss a hand-over."""

    event: Literal["ExchangeSuspected"] = "ExchangeSuspected"
    suspected_exchange_id: str
    image_id: str
    copy_id: str
    uploader_id: str
    holder_id: str


class RequestDeclined(Event):
    """The holder said no, or accepted another request for the copy (`accepted_request_id` names it)."""

    event: Literal["RequestDeclined"] = "RequestDeclined"
    request_id: str
    requester_id: str
    copy_id: str
    current_holder_id: str
    accepted_request_id: str | None = None


class RequestCancelled(Event):
    """An open request withdrawn: by its requester, or by either side while its hand-over was in progress."""

    event: Literal["RequestCancelled"] = "RequestCancelled"
    request_id: str
    requester_id: str
    copy_id: str
    current_holder_id: str
    cancelled_by: str
    exchange_id: str | None = None


class ReturnStarted(Event):
    """A borrowed copy is on its way back: a hand-over from its holder to its owner is in progress."""

    event: Literal["ReturnStarted"] = "ReturnStarted"
    exchange_id: str
    copy_id: str
    from_user_id: str
    to_user_id: str
    started_by: str


class ReturnCancelled(Event):
    """A return hand-over called off before the owner confirmed it; the copy stays on loan."""

    event: Literal["ReturnCancelled"] = "ReturnCancelled"
    exchange_id: str
    copy_id: str
    from_user_id: str
    to_user_id: str
    cancelled_by: str


class SuspectedExchangeDismissed(Event):
    """One side said the photo does not mean the copy changed hands."""

    event: Literal["SuspectedExchangeDismissed"] = "SuspectedExchangeDismissed"
    suspected_exchange_id: str
    copy_id: str
    uploader_id: str
    holder_id: str
    dismissed_by: str


def change_id() -> str:
    """A fresh id for a change that can happen to one subject many times (an edit, a rename)."""
    import uuid

    return str(uuid.uuid4())


class CopyUpdated(Event):
    """The owner changed a copy's notes, tags or availability; `fields` names what changed."""

    event: Literal["CopyUpdated"] = "CopyUpdated"
    change_id: str = Field(default_factory=change_id)
    copy_id: str
    owner_id: str
    fields: list[str]


class CopyWithdrawn(Event):
    """The owner took a copy out of circulation for good."""

    event: Literal["CopyWithdrawn"] = "CopyWithdrawn"
    copy_id: str
    owner_id: str


class CopyLost(Event):
    """The owner or the holder recorded that a copy is lost."""

    event: Literal["CopyLost"] = "CopyLost"
    copy_id: str
    reported_by: str


class BookUpdated(Event):
    """A book's title, authors, year, language or tags changed (a catalog import)."""

    event: Literal["BookUpdated"] = "BookUpdated"
    change_id: str = Field(default_factory=change_id)
    book_id: str


class MemberRenamed(Event):
    """A member's display name changed; documents that name them as holder follow."""

    event: Literal["MemberRenamed"] = "MemberRenamed"
    change_id: str = Field(default_factory=change_id)
    user_id: str
    display_name: str


EVENT_TYPES: dict[str, type[Event]] = {
    cls.model_fields["event"].default: cls
    for cls in (ImageUploaded, BookIdentified, DedupResolved, RequestCreated, ExchangeAccepted, ExchangeCompleted,
                ExchangeSuspected, RequestDeclined, RequestCancelled, ReturnStarted, ReturnCancelled,
                SuspectedExchangeDismissed, CopyUpdated, CopyWithdrawn, CopyLost, BookUpdated, MemberRenamed)
}
