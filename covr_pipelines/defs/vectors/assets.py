"""The cover-embedding read model: Qdrant synced from Postgres, or pgvector in Postgres itself."""


import dagster as dg

from covr_core.vectors.stores import CoverPoint, PgVectorStore
from covr_pipelines.defs.ingestion.assets import batch_run_id
from covr_pipelines.resources import PostgresResource, VectorStoreResource

GROUP = "vectors"
PAGE = 500


def _points(conn, *, run_id: str | None):
    rows = conn.execute(
        """
        select e.image_id, e.embedding::real[] as embedding, e.model, e.kind, e.sha256,
               i.copy_id, c.book_id
        from media.cover_embedding e
        join media.image i on i.image_id = e.image_id
        left join catalog.copy c on c.copy_id = i.copy_id
        where %(run_id)s::text is null
           or e.image_id in (select r.image_id from ingest.dedup_result r where r.run_id = %(run_id)s)
        order by e.image_id
        """,
        {"run_id": run_id},
    )
    for r in rows:
        yield CoverPoint(
            image_id=str(r["image_id"]), vector=r["embedding"],
            copy_id=str(r["copy_id"]) if r["copy_id"] else None, book_id=str(r["book_id"]) if r["book_id"] else None,
            kind=r["kind"], sha256=r["sha256"], model=r["model"],
        )


def sync_vectors(context, postgres: PostgresResource, vectors: VectorStoreResource, *, run_id: str | None) -> dict:
    store = vectors.get_store(postgres)
    if isinstance(store, PgVectorStore):
        return {"store": store.describe(), "synced": 0, "note": "pgvector is the system-of-record table itself"}
    store.ensure_collection()
    synced, batch = 0, []
    with postgres.connection() as conn:
        for point in _points(conn, run_id=run_id):
            batch.append(point)
            if len(batch) == PAGE:
                store.upsert(batch)
                synced, batch = synced + len(batch), []
        if batch:
            store.upsert(batch)
            synced += len(batch)
    context.log.info(f"synced {synced} cover embeddings to {store.describe()}")
    return {"store": store.describe(), "synced": synced, "points": store.count()}


@dg.asset(group_name=GROUP, owners=[f"team:{GROUP}"], kinds={"qdrant", "postgres"}, deps=["dedup_decisions"])
def cover_vectors(
    context: dg.AssetExecutionContext, postgres: PostgresResource, vectors: VectorStoreResource
) -> dg.MaterializeResult:
    """Upsert this run's cover embeddings, with their copy and book, into the vector read model."""
    return dg.MaterializeResult(metadata=sync_vectors(context, postgres, vectors, run_id=batch_run_id(context)))
