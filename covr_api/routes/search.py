"""Search: copies by words, filters, sort and facets, and copies with similar covers; only copies the caller may see."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request

from covr_api.deps import CurrentUser, DbDep
from covr_api.errors import problems
from covr_api.schemas.search import SearchResultPublic, SimilarCopiesPublic
from covr_core.search import vectors
from covr_core.search.backend import MAX_LIMIT
from covr_core.search.backends import backend_from_settings
from covr_core.search.service import search_copies

router = APIRouter(prefix="/search", tags=["search"])
similar_router = APIRouter(prefix="/copies", tags=["search"])


def _backend(request: Request):
    state = request.app.state
    if getattr(state, "search_backend", None) is None:
        state.search_backend = backend_from_settings(state.settings, state.db.connection)
    return state.search_backend


def _vector_store(request: Request):
    state = request.app.state
    if getattr(state, "vector_store", None) is None:
        state.vector_store = vectors.store_from_settings(state.settings, state.db.connection)
    return state.vector_store


@router.get("", response_model=SearchResultPublic, responses=problems(401, 422))
def search(
    request: Request,
    db: DbDep,
    user: CurrentUser,
    q: Annotated[str, Query(description="Words (typos tolerated; the last word also matches as a prefix); "
                                        "\"quoted words\" are an exact phrase", max_length=500)] = "",
    filter: Annotated[str | None, Query(description="A Meilisearch filter, e.g. `status = available AND "
                                                    "published_year >= 2000`", max_length=2000)] = None,
    sort: Annotated[str | None, Query(description="title, published_year, condition_grade or created_at, "
                                                  "`:asc` or `:desc`, comma-separated")] = None,
    facets: Annotated[str | None, Query(description="Filterable fields to count matches by, comma-separated")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 20,
    offset: Annotated[int, Query(ge=0)] = 0,
):
    """Copies I own or hold and copies my contacts hold, best match first."""
    return search_copies(db, _backend(request), viewer_id=user.user_id, q=q, filter=filter, sort=sort,
                         facets=facets, limit=limit, offset=offset).as_dict()


@similar_router.get("/{copy_id}/similar", response_model=SimilarCopiesPublic, responses=problems(401, 404, 422))
def similar(
    copy_id: str,
    request: Request,
    db: DbDep,
    user: CurrentUser,
    limit: Annotated[int, Query(ge=1, le=vectors.MAX_SIMILAR)] = 10,
):
    """Copies whose covers look like this one's, among the copies I may see; empty while it has no cover vector."""
    data = vectors.similar_copies(db, _vector_store(request), viewer_id=user.user_id, copy_id=copy_id, limit=limit)
    return SimilarCopiesPublic(data=data, count=len(data))
