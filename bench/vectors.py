"""Bench the vector read model (pgvector HNSW latency and recall) and CLIP throughput (fp32 vs int8); run by hand.

    .venv/bin/python bench/vectors.py                 # 100k vectors, 500 queries, then CLIP
    .venv/bin/python bench/vectors.py --skip-clip --vectors 20000

pgvector: a scratch database on a throwaway embedded server, migrated like production. media.cover_embedding
keeps its foreign key to media.image, so one accepted media.image row per vector is loaded first with COPY;
the HNSW index is dropped before the bulk load and rebuilt afterwards (as a rebuild of the read model would).
It runs the sweep twice: with the embedded server's shared_buffers as configured, then restarted with a
buffer cache that holds the whole index. Latency is measured through PgVectorStore.search, the code path the
pipeline uses; recall@10 is against exact top-10 by numpy brute force over the same vectors.
Baseline in the same run: Postgres's exact scan (index off). Figures on a shared 2-core box are noisy, p99 most.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np
import psycopg
from psycopg.conninfo import make_conninfo

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from covr_core.platform import migrations  # noqa: E402
from covr_core.platform.db import open_pool, start_embedded  # noqa: E402
from covr_core.vectors.stores import DEFAULT_EF_SEARCH, HNSW_WITH, MAX_EF_SEARCH, PgVectorStore  # noqa: E402

DIM = 512
TARGET_P99_MS = 5.0
TARGET_RECALL = 0.99
HNSW_INDEX = ("create index cover_embedding_hnsw_idx on media.cover_embedding using hnsw (embedding vector_cosine_ops) "
              f"with ({HNSW_WITH})")


def clustered_unit_vectors(n: int, clusters: int, rng: np.random.Generator) -> np.ndarray:
    """Embedding-like data: all vectors share a common direction (CLIP image embeddings sit in a narrow cone),
    and group in clusters (several photos of one cover, one edition's copies). Measured: unrelated pairs
    score ~0.45, pairs in one cluster ~0.8."""
    common = _normalize(rng.standard_normal(DIM))
    centres = _normalize(0.75 * common + 0.6614 * _normalize(rng.standard_normal((clusters, DIM))))
    labels = rng.integers(0, clusters, n)
    # sigma gives a cosine of ~0.9 between a vector and its cluster centre: 1 / sqrt(1 + DIM * sigma**2).
    sigma = 0.0214
    return _normalize(centres[labels] + sigma * rng.standard_normal((n, DIM))).astype(np.float32)


def _normalize(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def exact_top_k(data: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    scores = queries @ data.T
    top = np.argpartition(-scores, k, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1)
    return np.take_along_axis(top, order, axis=1)


def load(url: str, ids: list[str], data: np.ndarray) -> None:
    from pgvector.psycopg import register_vector

    with psycopg.connect(url) as conn:
        register_vector(conn)  # safe here: the migration created the extension before this connection asked
        user = conn.execute(
            "insert into contact.user (handle, display_name) values ('bench', 'Bench') returning user_id"
        ).fetchone()[0]
        conn.execute("drop index media.cover_embedding_hnsw_idx")
        t = time.perf_counter()
        with conn.cursor().copy(
            "copy media.image (image_id, object_key, uploader_id, status, sha256, phash, byte_size, format) "
            "from stdin"
        ) as copy:
            for image_id in ids:
                sha = hashlib.sha256(image_id.encode()).hexdigest()
                copy.write_row((image_id, f"bench/{image_id}.jpg", user, "accepted", sha, 0, 1, "jpeg"))
        with conn.cursor().copy(
            "copy media.cover_embedding (image_id, model, embedding, kind, sha256) from stdin with (format binary)"
        ) as copy:
            copy.set_types(["uuid", "text", "vector", "text", "text"])
            for image_id, vector in zip(ids, data):
                sha = hashlib.sha256(image_id.encode()).hexdigest()
                copy.write_row((uuid.UUID(image_id), "bench:clustered-random", vector, "cover_front", sha))
        conn.commit()
        elapsed = time.perf_counter() - t
        print(f"  load      {len(ids):>7} rows (media.image + cover_embedding) by COPY in {elapsed:.1f} s")
        # The whole graph in memory (no slow on-disk phase): ~2.7 kB a vector at 512-d, with headroom.
        conn.execute(f"set maintenance_work_mem = '{max(2048, len(ids) * 4 // 1000)}MB'")
        conn.execute("set max_parallel_maintenance_workers = 1")  # 2 cores: leader + one worker
        t = time.perf_counter()
        conn.execute(HNSW_INDEX)
        conn.commit()
        conn.autocommit = True  # VACUUM refuses to run inside a transaction
        conn.execute("vacuum analyze media.image, media.cover_embedding")
        size = conn.execute("select pg_size_pretty(pg_relation_size('media.cover_embedding_hnsw_idx'))").fetchone()[0]
        print(f"  hnsw      built in {time.perf_counter() - t:.1f} s ({HNSW_WITH}), index {size}")


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values) * 1000, q))


def bench_pgvector(args) -> None:
    rng = np.random.default_rng(20240601)
    total = args.vectors + args.queries
    everything = clustered_unit_vectors(total, args.clusters, rng)
    data, queries = everything[: args.vectors], everything[args.vectors :]  # queries are unseen photos
    ids = [str(uuid.UUID(int=i + 1, version=4)) for i in range(args.vectors)]
    print(f"pgvector: {args.vectors} x {DIM}-d vectors in {args.clusters} clusters, {args.queries} top-10 queries")

    t = time.perf_counter()
    truth = exact_top_k(data, queries, 10)
    numpy_ms = (time.perf_counter() - t) / args.queries * 1000
    print(f"  exact     numpy brute force {numpy_ms:.2f} ms/query (batched matmul, for reference)")

    with tempfile.TemporaryDirectory(prefix="covr-bench-") as tmp:
        pg_data = Path(tmp) / "pg"
        server = start_embedded(pg_data)
        try:
            admin = server.get_uri()
            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute("create database covr_bench_vectors")
                default_buffers = conn.execute("show shared_buffers").fetchone()[0]
            url = make_conninfo(admin, dbname="covr_bench_vectors")
            with psycopg.connect(url) as conn:
                migrations.migrate(conn)
            load(url, ids, data)
            with open_pool(url, max_size=2) as pool:
                run_baseline(pool, queries, args)
                print(f"  -- embedded server as configured: shared_buffers {default_buffers}")
                run_queries(pool, ids, queries, truth, args)
            if args.shared_buffers:
                # The index does not fit the default buffer cache, so every search pays for page copies from
                # the OS cache; same data, server restarted with room for the whole index.
                with psycopg.connect(admin, autocommit=True) as conn:
                    conn.execute(f"alter system set shared_buffers = '{args.shared_buffers}'")
                server.cleanup()
                server = start_embedded(pg_data)
                with open_pool(url, max_size=2) as pool:
                    with pool.connection() as conn:
                        shown = conn.execute("show shared_buffers").fetchone()["shared_buffers"]
                    print(f"  -- restarted with shared_buffers {shown}")
                    run_queries(pool, ids, queries, truth, args)
        finally:
            server.cleanup()


def run_baseline(pool, queries: np.ndarray, args) -> None:
    """Postgres scanning every row exactly, same query shape, index switched off."""
    exact_store = _ExactScanStore(pool.connection)
    times = []
    for q in queries[: args.baseline_queries]:
        t = time.perf_counter()
        exact_store.search(q, limit=10)
        times.append(time.perf_counter() - t)
    print(f"  baseline  exact scan in Postgres: p50 {pct(times, 50):.1f} ms, p99 {pct(times, 99):.1f} ms "
          f"({args.baseline_queries} queries)")
    args.baseline_p50 = pct(times, 50)


def run_queries(pool, ids: list[str], queries: np.ndarray, truth: np.ndarray, args) -> None:
    index_of = {image_id: i for i, image_id in enumerate(ids)}
    # Warm-up at the widest ef: steady state of a long-running server, whose cache holds the hot index pages.
    warm = PgVectorStore(pool.connection, ef_search=max(args.ef))
    for q in queries:
        warm.search(q, limit=10)

    print(f"  {'ef_search':>9} {'p50 ms':>8} {'p99 ms':>8} {'recall@10':>10}  vs exact scan   targets: "
          f"p99 <= {TARGET_P99_MS} ms, recall@10 >= {TARGET_RECALL}")
    chosen = None
    for ef in args.ef:
        store = PgVectorStore(pool.connection, ef_search=ef)
        times, found = [], 0
        for q, expected in zip(queries, truth):
            t = time.perf_counter()
            hits = store.search(q, limit=10)
            times.append(time.perf_counter() - t)
            found += len({index_of[h.image_id] for h in hits} & set(expected.tolist()))
        recall = found / (10 * len(queries))
        p50, p99 = pct(times, 50), pct(times, 99)
        ok = p99 <= TARGET_P99_MS and recall >= TARGET_RECALL
        if ok and chosen is None:
            chosen = ef
        print(f"  {ef:>9} {p50:>8.2f} {p99:>8.2f} {recall:>10.4f}  {args.baseline_p50 / p50:>6.0f}x faster"
              f"   {'meets both' if ok else ''}")
    if chosen is None:
        print("  => no ef_search in the sweep meets both targets")
    else:
        print(f"  => smallest ef_search meeting both targets: {chosen} (PgVectorStore default {DEFAULT_EF_SEARCH})")


class _ExactScanStore(PgVectorStore):
    """The same query with the index disabled, for the baseline."""

    def search(self, vector, *, limit=10, score_threshold=None, exclude_image_ids=()):
        with self._connect() as conn, conn.transaction():
            conn.execute("set local enable_indexscan = off")
            conn.execute(
                "select image_id from media.cover_embedding order by embedding <=> %s::vector limit %s",
                ("[" + ",".join(map(repr, np.asarray(vector, dtype=np.float32).tolist())) + "]", limit),
            ).fetchall()
        return []


def bench_clip(args) -> None:
    from PIL import Image

    from covr_core.identification.embedding import CoverEmbedder

    rng = np.random.default_rng(1)
    # Smooth random pictures (upsampled noise): photo-like for the resize path, cheap to generate.
    images = [
        Image.fromarray(rng.integers(0, 255, (30, 20, 3), dtype=np.uint8)).resize((1000, 1500), Image.BILINEAR)
        for _ in range(args.images)
    ]
    print(f"CLIP ViT-B-32 (random init), {args.images} images of 1000x1500, batch 16, {args.threads} threads")
    results = {}
    for label, quantize in (("fp32", False), ("int8", True)):
        embedder = CoverEmbedder.load("ViT-B-32", allow_random=True, quantize=quantize, threads=args.threads)
        embedder.embed(images[:16])  # warm-up: first call allocates and picks kernels
        t = time.perf_counter()
        vectors = embedder.embed(images, batch_size=16)
        elapsed = time.perf_counter() - t
        results[label] = (args.images / elapsed, vectors)
        print(f"  {label}      {args.images / elapsed:6.1f} images/s")
    ratio = results["int8"][0] / results["fp32"][0]
    cosine = np.sum(results["int8"][1] * results["fp32"][1], axis=1)
    print(f"  int8/fp32 {ratio:.2f}x throughput; cosine int8 vs fp32: min {cosine.min():.5f}, "
          f"mean {cosine.mean():.5f} (with real weights measured >= 0.9998)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vectors", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=500)
    parser.add_argument("--clusters", type=int, default=2_000)
    parser.add_argument("--baseline-queries", type=int, default=20)
    parser.add_argument("--ef", type=lambda s: [int(x) for x in s.split(",")], default=[20, 40, 64, 100, 200, 400])
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--shared-buffers", default="1GB", help="second sweep after a restart with this; '' skips")
    parser.add_argument("--skip-pgvector", action="store_true")
    parser.add_argument("--skip-clip", action="store_true")
    args = parser.parse_args()
    if any(not 1 <= ef <= MAX_EF_SEARCH for ef in args.ef):
        parser.error(f"--ef values must be between 1 and {MAX_EF_SEARCH}")
    if not args.skip_pgvector:
        bench_pgvector(args)
    if not args.skip_clip:
        bench_clip(args)


if __name__ == "__main__":
    main()
