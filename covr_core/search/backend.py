"""One interface for both backends and one result shape: hits, a total estimate, facet counts, the time taken."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

import psycopg

from covr_core.search.query import Filter, ParsedQuery, Sort

Connect = Callable[[], AbstractContextManager[psycopg.Connection]]

# Meilisearch's pagination.maxTotalHits default: totals are counted up to here, and no page reaches past it.
MAX_TOTAL_HITS = 1000
MAX_LIMIT = 100
# Meilisearch's faceting.maxValuesPerFacet default.
MAX_FACET_VALUES = 100


@dataclass(frozen=True)
class Scope:
    """Whose search this is: the copies `viewer_id` may see (covr_core.catalog.copies' rule), or everything for an
    operator (viewer_id None). `contact_ids` are the viewer's accepted contacts, for backends outside Postgres."""

    viewer_id: str | None
    contact_ids: tuple[str, ...] = ()

    @property
    def is_everything(self) -> bool:
        return self.viewer_id is None


@dataclass(frozen=True)
class SearchRequest:
    query: ParsedQuery
    filter: Filter | None = None
    sort: tuple[Sort, ...] = ()
    limit: int = 20
    offset: int = 0
    facets: tuple[str, ...] = ()


@dataclass
class SearchResult:
    hits: list[dict[str, Any]]
    total: int  # an estimate capped at MAX_TOTAL_HITS, as Meilisearch's estimatedTotalHits
    facets: dict[str, dict[str, int]] = field(default_factory=dict)
    took_ms: float = 0.0
    backend: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"hits": self.hits, "total": self.total, "facets": self.facets, "took_ms": round(self.took_ms, 3),
                "backend": self.backend}


@dataclass(frozen=True)
class SyncReport:
    upserted: int = 0
    deleted: int = 0


@dataclass(frozen=True)
class ReindexReport:
    documents: int
    seconds: float
    target: str  # what was swapped in: a table or an index name


class SearchBackend(ABC):
    """The copies index. Writes are idempotent: applying the same copy ids twice leaves the same index."""

    name: str = "search"

    @abstractmethod
    def search(self, request: SearchRequest, scope: Scope) -> SearchResult: ...

    @abstractmethod
    def apply(self, conn: psycopg.Connection, copy_ids: Sequence[str]) -> SyncReport:
        """Rebuild the documents of these copies from the SQL model and delete the ones the model no longer has.

        `conn` is in the search-sync consumer's transaction: the embedded backend writes in it (documents and cursor
        commit together); Meilisearch reads the model through it and awaits its own tasks."""

    @abstractmethod
    def reindex(self, connect: Connect) -> ReindexReport:
        """Build a complete fresh index from the model and swap it in atomically; searches never see it half-built."""

    @abstractmethod
    def count(self) -> int: ...

    @abstractmethod
    def documents(self, copy_ids: Iterable[str]) -> list[dict[str, Any]]:
        """The stored documents of these copies (for the reindex job's checks), in the model's shape."""

    @abstractmethod
    def is_built(self) -> bool:
        """Whether a full build ever completed; the sync builds once before its first round if not."""

    def ensure(self) -> None:
        """Create what the index needs (settings, a first index); a no-op when it is there."""

    def describe(self) -> str:
        return self.name
