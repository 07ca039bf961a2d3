"""Who each cover vector's copy belongs to, kept current, and a full rebuild that swaps a fresh store in.

The payload (owner, holder, copy status) lets a similar-covers search stay among the copies a member may see. The
search-sync consumer updates it when a copy changes hands or leaves circulation; the nightly reindex rebuilds it.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass

import psycopg
from psycopg.rows import dict_row

from covr_core.vectors.stores import DIM, HNSW_BUILD_MEMORY, HNSW_WITH, QdrantVectorStore

TABLE = "media.cover_embedding"
PAGE = 500


@dataclass(frozen=True)
class RebuildReport:
    points: int
    seconds: float
    target: str


def update_pg_payloads(conn: psycopg.Connection, copy_ids: Sequence[str]) -> int:
    """Copy the owner, holder and status of these copies onto their vectors, in the caller's transaction."""
    if not copy_ids:
        return 0
    return conn.execute(
        f"""
        update {TABLE} e
        set owner_id = c.owner_id, holder_id = c.current_holder_id, copy_status = c.status
        from catalog.copy c
        where c.copy_id = e.copy_id and e.copy_id = any(%s::uuid[])
          and (e.owner_id, e.holder_id, e.copy_status) is distinct from (c.owner_id, c.current_holder_id, c.status)
        """,
        (list(copy_ids),),
    ).rowcount


def copy_payloads(conn: psycopg.Connection, copy_ids: Sequence[str]) -> dict[str, dict]:
    rows = conn.cursor(row_factory=dict_row).execute(
        "select copy_id, owner_id, current_holder_id, status from catalog.copy where copy_id = any(%s::uuid[])",
        (list(copy_ids),),
    ).fetchall()
    return {str(r["copy_id"]): {"owner_id": str(r["owner_id"]), "holder_id": str(r["current_holder_id"]),
                                "copy_status": r["status"]} for r in rows}


def update_qdrant_payloads(store: QdrantVectorStore, conn: psycopg.Connection, copy_ids: Sequence[str]) -> int:
    """Set the payload of every point of these copies (selected by copy_id); idempotent."""
    from qdrant_client import models

    payloads = copy_payloads(conn, copy_ids)
    for copy_id, payload in payloads.items():
        store._client.set_payload(
            store.collection, payload=payload, wait=True,
            points=models.Filter(must=[models.FieldCondition(key="copy_id",
                                                             match=models.MatchValue(value=copy_id))]))
    return len(payloads)


def rebuild_pgvector(conn: psycopg.Connection) -> RebuildReport:
    """A fresh media.cover_embedding with current payloads and a fresh HNSW index, renamed into place.

    One transaction: writers (ingest embedding a new cover) wait on its SHARE lock until it commits, readers keep
    reading the old table until the rename, and a failure leaves everything as it was.
    """
    started = time.perf_counter()
    suffix = uuid.uuid4().hex[:8]
    with conn.transaction():
        conn.execute(f"lock table {TABLE} in share mode")
        conn.execute("drop table if exists media.cover_embedding_next")
        conn.execute(f"create table media.cover_embedding_next (like {TABLE} including defaults including constraints)")
        points = conn.execute(
            f"""
            insert into media.cover_embedding_next
                (image_id, model, embedding, copy_id, book_id, kind, sha256, created_at, owner_id, holder_id,
                 copy_status)
            select e.image_id, e.model, e.embedding, i.copy_id, coalesce(c.book_id, e.book_id), e.kind, e.sha256,
                   e.created_at, c.owner_id, c.current_holder_id, c.status
            from {TABLE} e
            join media.image i on i.image_id = e.image_id
            left join catalog.copy c on c.copy_id = i.copy_id
            """
        ).rowcount
        conn.execute(f"alter table media.cover_embedding_next add constraint cover_embedding_pkey_{suffix} "
                     "primary key (image_id)")
        conn.execute(f"alter table media.cover_embedding_next add constraint cover_embedding_image_{suffix} "
                     "foreign key (image_id) references media.image")
        conn.execute(f"alter table media.cover_embedding_next add constraint cover_embedding_copy_{suffix} "
                     "foreign key (copy_id) references catalog.copy")
        conn.execute(f"alter table media.cover_embedding_next add constraint cover_embedding_book_{suffix} "
                     "foreign key (book_id) references catalog.book")
        conn.execute("select set_config('maintenance_work_mem', %(m)s, true) "
                     "where pg_size_bytes(current_setting('maintenance_work_mem')) < pg_size_bytes(%(m)s)",
                     {"m": HNSW_BUILD_MEMORY})
        conn.execute(f"create index cover_embedding_hnsw_{suffix} on media.cover_embedding_next "
                     f"using hnsw (embedding vector_cosine_ops) with ({HNSW_WITH})")
        conn.execute(f"create index cover_embedding_copy_{suffix}_idx on media.cover_embedding_next (copy_id)")
        conn.execute(f"alter table {TABLE} rename to cover_embedding_old")
        conn.execute("alter table media.cover_embedding_next rename to cover_embedding")
        conn.execute("drop table media.cover_embedding_old")
    conn.execute(f"analyze {TABLE}")
    return RebuildReport(points=points, seconds=time.perf_counter() - started, target=f"pgvector {TABLE}")


def rebuild_qdrant(store: QdrantVectorStore, connect: Callable[[], AbstractContextManager[psycopg.Connection]],
                   *, alias: str | None = None) -> RebuildReport:
    """Every vector of media.cover_embedding, with its payload, into a new collection; then the alias moves to it in
    one call and the collections it pointed at before are dropped. A collection (not an alias) of that name, left
    from before aliases, is dropped just before the alias is created: the only moment searches can miss."""
    from qdrant_client import models

    started = time.perf_counter()
    client, alias = store._client, alias or store.collection
    new = f"{alias}_{time.strftime('%Y%m%d%H%M%S')}_{uuid.uuid4().hex[:6]}"
    client.create_collection(new, vectors_config=models.VectorParams(size=DIM, distance=models.Distance.COSINE))
    client.create_payload_index(new, "copy_id", models.PayloadSchemaType.KEYWORD)
    client.create_payload_index(new, "holder_id", models.PayloadSchemaType.KEYWORD)
    points = 0
    with connect() as conn, conn.transaction():
        cur = conn.cursor(name="cover_vectors_scan", row_factory=dict_row)
        cur.itersize = PAGE
        cur.execute(
            f"""
            select e.image_id, e.embedding::real[] as embedding, e.kind, e.sha256, i.copy_id,
                   coalesce(c.book_id, e.book_id) as book_id, c.owner_id, c.current_holder_id, c.status
            from {TABLE} e join media.image i on i.image_id = e.image_id
            left join catalog.copy c on c.copy_id = i.copy_id
            """
        )
        batch = []
        for r in cur:
            image_id = str(r["image_id"])
            batch.append(models.PointStruct(id=store.point_id(image_id), vector=list(r["embedding"]), payload={
                "image_id": image_id, "copy_id": str(r["copy_id"]) if r["copy_id"] else None,
                "book_id": str(r["book_id"]) if r["book_id"] else None, "kind": r["kind"], "sha256": r["sha256"],
                "owner_id": str(r["owner_id"]) if r["owner_id"] else None,
                "holder_id": str(r["current_holder_id"]) if r["current_holder_id"] else None,
                "copy_status": r["status"]}))
            if len(batch) == PAGE:
                client.upsert(new, points=batch, wait=True)
                points, batch = points + len(batch), []
        if batch:
            client.upsert(new, points=batch, wait=True)
            points += len(batch)
    previous = [a.collection_name for a in client.get_aliases().aliases if a.alias_name == alias]
    if not previous and client.collection_exists(alias):
        client.delete_collection(alias)
    actions = [models.DeleteAliasOperation(delete_alias=models.DeleteAlias(alias_name=alias))] if previous else []
    actions.append(models.CreateAliasOperation(create_alias=models.CreateAlias(collection_name=new, alias_name=alias)))
    client.update_collection_aliases(change_aliases_operations=actions)
    for old in previous:
        client.delete_collection(old)
    return RebuildReport(points=points, seconds=time.perf_counter() - started,
                         target=f"qdrant collection {new} (alias {alias})")
