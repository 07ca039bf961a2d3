"""A copy's provenance: its entries (who, what, when, the photo), their verification, and inclusion proofs."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field


class UserRef(BaseModel):
    user_id: str
    handle: str | None


class EvidencePublic(BaseModel):
    """The photo that triggered the entry."""

    image_id: str
    sha256: str
    phash: str | None = Field(description="64-bit pHash as 16 hex digits")


class HistoryEntryPublic(BaseModel):
    seq: int
    entry_type: str
    at: datetime
    from_user: UserRef | None
    to_user: UserRef | None
    evidence: EvidencePublic | None
    refs: dict[str, Any]
    payload: dict[str, Any]
    entry_hash: str
    prev_hash: str


class HistoryPublic(BaseModel):
    data: list[HistoryEntryPublic]
    count: int = Field(description="entries in the copy's whole chain")
    next_after: int | None = Field(description="pass as `after` for the next page; null on the last page")


class ProblemPublic(BaseModel):
    reason: str
    detail: str
    seq: int | None
    message: str


class HistoryVerificationPublic(BaseModel):
    copy_id: str
    ok: bool
    entries: int
    checkpoint_id: int | None
    problems: list[ProblemPublic]


class InclusionProofPublic(BaseModel):
    """Check it with `covr ledger check-proof FILE` and the operator's public key; no database needed."""

    type: str
    v: int
    copy_id: str
    head_seq: int
    head_hash: str
    leaf_index: int
    tree_size: int
    inclusion_path: list[str]
    checkpoint: dict[str, Any]
    entries: list[str]
