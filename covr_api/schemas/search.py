"""Search on the wire: one copy document, a search result (hits, total estimate, facets, time taken), similar covers."""

from __future__ import annotations

from uuid import UUID

from pydantic import BaseModel, Field

from covr_api.schemas.copies import CopyStatus


class CopyDocumentPublic(BaseModel):
    """A copy as the search index holds it: the book's fields, the copy's, and its holder's name."""

    copy_id: UUID
    book_id: UUID
    title: str
    authors: list[str]
    isbn13: str | None
    published_year: int | None
    tags: list[str]
    language: str | None
    status: CopyStatus
    current_holder_id: UUID
    current_holder_name: str
    owner_id: UUID
    condition_grade: int | None
    has_images: bool
    notes: str | None
    created_at: str = Field(description="ISO 8601, UTC")
    updated_at: str = Field(description="ISO 8601, UTC")
    search_terms: list[str] = Field(description="Folded title and author words")


class SearchResultPublic(BaseModel):
    """The same shape on either backend. `total` is an estimate counted up to 1000, like Meilisearch's."""

    hits: list[CopyDocumentPublic]
    total: int
    facets: dict[str, dict[str, int]] = Field(description="For each facet asked for: value -> number of matches")
    took_ms: float
    backend: str = Field(description="postgres or meilisearch")


class SimilarCopyPublic(BaseModel):
    copy_id: UUID
    book_id: UUID
    title: str
    authors: list[str]
    status: CopyStatus
    current_holder_id: UUID
    image_id: UUID = Field(description="The cover that matched")
    score: float = Field(description="Cosine similarity of the covers, 1 = identical")


class SimilarCopiesPublic(BaseModel):
    data: list[SimilarCopyPublic]
    count: int
