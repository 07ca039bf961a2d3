"""Searching on behalf of someone: inputs checked, the caller's visibility applied, one backend asked."""

from __future__ import annotations

from covr_core.catalog.copies import contact_ids
from covr_core.search.backend import MAX_LIMIT, MAX_TOTAL_HITS, Scope, SearchBackend, SearchRequest, SearchResult
from covr_core.search.query import parse_facets, parse_filter, parse_query, parse_sort
from covr_core.shared.errors import InvalidInput


def build_request(
    *, q: str | None = None, filter: str | None = None, sort: str | list[str] | None = None, limit: int = 20,
    offset: int = 0, facets: str | list[str] | None = None,
) -> SearchRequest:
    """Parse and check what a searcher asked for; InvalidInput names the part that is wrong."""
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidInput(f"limit {limit} is outside 1..{MAX_LIMIT}")
    if offset < 0:
        raise InvalidInput(f"offset {offset} is negative")
    if offset + limit > MAX_TOTAL_HITS:
        raise InvalidInput(f"offset + limit is {offset + limit}; results reach only the first {MAX_TOTAL_HITS}, "
                           "narrow the search with a filter")
    return SearchRequest(query=parse_query(q), filter=parse_filter(filter), sort=parse_sort(sort), limit=limit,
                         offset=offset, facets=parse_facets(facets))


def scope_for(conn, viewer_id: str | None) -> Scope:
    """The copies `viewer_id` may see (None: an operator's search over everything)."""
    if viewer_id is None:
        return Scope(viewer_id=None)
    return Scope(viewer_id=viewer_id, contact_ids=tuple(contact_ids(conn, viewer_id)))


def search_copies(conn, backend: SearchBackend, *, viewer_id: str | None, **request) -> SearchResult:
    """Search the copies index as `viewer_id`: only copies they may see come back, on every backend."""
    return backend.search(build_request(**request), scope_for(conn, viewer_id))
