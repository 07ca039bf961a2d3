"""The nightly full rebuild of the read models of search: the copies index and the cover vectors, swapped in whole."""

from __future__ import annotations

import random

import dagster as dg

from covr_core.search.document import MODEL, model_rows
from covr_core.vectors import rebuild
from covr_core.vectors.stores import QdrantVectorStore
from covr_pipelines.defs.search.resources import SearchResource
from covr_pipelines.resources import PostgresResource, VectorStoreResource

GROUP = "search"
SAMPLE = 200


@dg.asset(group_name=GROUP, owners=[f"team:{GROUP}"], kinds={"postgres", "meilisearch"})
def copy_search_index(postgres: PostgresResource, search: SearchResource) -> dg.MaterializeResult:
    """Rebuild the copies index from the copy_search_document model and swap it in with no downtime."""
    backend = search.get_backend(postgres)
    with postgres.connection() as conn:
        selected = conn.execute(f"select count(*) as n from {MODEL}").fetchone()["n"]
    report = backend.reindex(postgres.connection)
    return dg.MaterializeResult(metadata={
        "backend": backend.describe(), "documents": report.documents, "model_rows": selected,
        "seconds": round(report.seconds, 3), "documents_per_s": round(report.documents / max(report.seconds, 1e-9)),
        "target": report.target,
    })


@dg.asset(group_name=GROUP, owners=[f"team:{GROUP}"], kinds={"postgres", "qdrant"}, deps=["cover_vectors"])
def cover_vector_index(postgres: PostgresResource, vectors: VectorStoreResource) -> dg.MaterializeResult:
    """Rebuild the cover vectors with their copies' holders: a new pgvector table, or a new Qdrant collection behind
    the alias."""
    with postgres.connection() as conn:
        report = rebuild.rebuild_pgvector(conn)
    store = vectors.get_store(postgres)
    if isinstance(store, QdrantVectorStore):
        report = rebuild.rebuild_qdrant(store, postgres.connection)
    return dg.MaterializeResult(metadata={"points": report.points, "seconds": round(report.seconds, 3),
                                          "target": report.target})


@dg.asset_check(asset=copy_search_index, blocking=True)
def documents_match_copies(postgres: PostgresResource, search: SearchResource) -> dg.AssetCheckResult:
    """The index holds one document per copy not withdrawn: as many as the model has rows, and as catalog.copy."""
    backend = search.get_backend(postgres)
    with postgres.connection() as conn:
        model = conn.execute(f"select count(*) as n from {MODEL}").fetchone()["n"]
        copies = conn.execute("select count(*) as n from catalog.copy where status <> 'withdrawn'").fetchone()["n"]
    documents = backend.count()
    return dg.AssetCheckResult(
        passed=documents == model == copies,
        metadata={"documents": documents, "model_rows": model, "copies": copies},
        description=None if documents == model == copies else
        f"the index holds {documents} document(s), the model {model} row(s), catalog.copy {copies} copies",
    )


@dg.asset_check(asset=copy_search_index)
def sample_matches_model(postgres: PostgresResource, search: SearchResource) -> dg.AssetCheckResult:
    """A random sample of documents equals the SQL model row for row (a change the sync has not applied yet shows
    as a difference, so differences are listed with their copy ids)."""
    backend = search.get_backend(postgres)
    with postgres.connection() as conn:
        ids = [str(r["copy_id"]) for r in conn.execute(f"select copy_id from {MODEL}")]
        sample = sorted(random.sample(ids, min(SAMPLE, len(ids))))
        expected = {d["copy_id"]: d for d in model_rows(conn, sample)}
    stored = {d["copy_id"]: d for d in backend.documents(sample)}
    differing = sorted(c for c in sample if expected.get(c) != stored.get(c))
    return dg.AssetCheckResult(
        passed=not differing,
        metadata={"sampled": len(sample), "differing": len(differing), "first_differing": differing[:10]},
        description=f"{len(differing)} of {len(sample)} sampled documents differ from the model: "
                    f"{', '.join(differing[:5])}" if differing else None,
    )
