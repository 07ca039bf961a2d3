"""Cover vectors as a read model of search: payloads kept in step by the sync, rebuilt by the reindex, and visually
similar covers among the copies a member may see."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import psycopg
from psycopg.rows import dict_row

from covr_core.catalog.copies import visible_sql
from covr_core.platform.settings import Settings
from covr_core.search.backend import Connect
from covr_core.shared.errors import InvalidInput, NotFound
from covr_core.shared.ids import is_uuid
from covr_core.vectors import rebuild
from covr_core.vectors.stores import PgVectorStore, QdrantVectorStore, VectorStore

MAX_SIMILAR = 50
# Nearest covers fetched per round before those the viewer may not see are dropped; doubled until enough are left.
FIRST_FETCH = 40
MAX_FETCH = 1000


def store_from_settings(settings: Settings, connect: Connect) -> VectorStore:
    if settings.qdrant_url:
        key = settings.qdrant_api_key.get_secret_value() if settings.qdrant_api_key else None
        return QdrantVectorStore.from_url(settings.qdrant_url, api_key=key)
    return PgVectorStore(connect, ef_search=settings.pgvector_ef_search)


def payload_updater(settings: Settings) -> Callable[[psycopg.Connection, Sequence[str]], int]:
    """What the search sync calls with each batch's copies: the pgvector columns always (in its transaction), and
    Qdrant's payloads when Qdrant is the store."""
    qdrant = None
    if settings.qdrant_url:
        key = settings.qdrant_api_key.get_secret_value() if settings.qdrant_api_key else None
        qdrant = QdrantVectorStore.from_url(settings.qdrant_url, api_key=key)

    def update(conn: psycopg.Connection, copy_ids: Sequence[str]) -> int:
        changed = rebuild.update_pg_payloads(conn, copy_ids)
        if qdrant is not None:
            changed = rebuild.update_qdrant_payloads(qdrant, conn, copy_ids)
        return changed

    return update


def rebuild_vectors(settings: Settings, connect: Connect) -> rebuild.RebuildReport:
    """pgvector: a new table swapped in. Qdrant: a new collection behind the alias (pgvector's payloads refreshed
    too)."""
    with connect() as conn:
        report = rebuild.rebuild_pgvector(conn)
    if settings.qdrant_url:
        key = settings.qdrant_api_key.get_secret_value() if settings.qdrant_api_key else None
        report = rebuild.rebuild_qdrant(QdrantVectorStore.from_url(settings.qdrant_url, api_key=key), connect)
    return report


def similar_copies(conn: psycopg.Connection, store: VectorStore, *, viewer_id: str, copy_id: str,
                   limit: int = 10) -> list[dict]:
    """Copies whose covers look most like this copy's, best first, among the copies `viewer_id` may see.

    NotFound when the viewer may not see the copy itself (as for a missing one); an empty list when it has no cover
    vector yet. Each copy appears once, with its closest cover's similarity (cosine, 1 = identical).
    """
    if not 1 <= limit <= MAX_SIMILAR:
        raise InvalidInput(f"limit {limit} is outside 1..{MAX_SIMILAR}")
    cur = conn.cursor(row_factory=dict_row)
    if not is_uuid(copy_id) or cur.execute(
        f"select 1 from catalog.copy c where c.copy_id = %(copy)s and {visible_sql('c')}",
        {"copy": copy_id, "viewer": viewer_id},
    ).fetchone() is None:
        raise NotFound(f"copy {copy_id} not found")
    own = cur.execute(
        "select image_id, embedding::real[] as embedding from media.cover_embedding where copy_id = %s "
        "order by (kind = 'cover_front') desc, created_at limit 1", (copy_id,)).fetchone()
    if own is None:
        return []
    own_images = [str(r["image_id"]) for r in cur.execute(
        "select image_id from media.image where copy_id = %s", (copy_id,))]
    query = np.asarray(own["embedding"], dtype=np.float32)
    fetch, best = FIRST_FETCH, {}
    while True:
        hits = store.search(query, limit=min(fetch, MAX_FETCH), exclude_image_ids=own_images)
        candidates = {}
        for hit in hits:
            if hit.copy_id and hit.copy_id != copy_id and hit.copy_id not in candidates:
                candidates[hit.copy_id] = hit
        visible = {str(r["copy_id"]) for r in cur.execute(
            f"select c.copy_id from catalog.copy c where c.copy_id = any(%(ids)s::uuid[]) and {visible_sql('c')}",
            {"ids": list(candidates), "viewer": viewer_id})} if candidates else set()
        best = {c: h for c, h in candidates.items() if c in visible}
        if len(best) >= limit or len(hits) < fetch or fetch >= MAX_FETCH:
            break
        fetch *= 2
    ranked = sorted(best.values(), key=lambda h: -h.score)[:limit]
    if not ranked:
        return []
    books = {str(r["copy_id"]): r for r in cur.execute(
        "select c.copy_id, c.book_id, b.title, b.authors, c.current_holder_id, c.status from catalog.copy c "
        "join catalog.book b on b.book_id = c.book_id where c.copy_id = any(%s::uuid[])",
        ([h.copy_id for h in ranked],))}
    return [{"copy_id": h.copy_id, "book_id": str(books[h.copy_id]["book_id"]), "title": books[h.copy_id]["title"],
             "authors": list(books[h.copy_id]["authors"]), "status": books[h.copy_id]["status"],
             "current_holder_id": str(books[h.copy_id]["current_holder_id"]), "image_id": h.image_id,
             "score": round(h.score, 6)} for h in ranked]
