"""Bench: exact pHash near-duplicate lookup (multi-index hashing) against a sequential bit_count scan.

Run by hand:  python bench/neardup.py [--quick | --sizes 1000000,10000000] [--lookups 300]
It starts a scratch embedded PostgreSQL in a temporary folder, grows media.image to each size in
turn, and prints latency, speed-up over the scan in the same run, load rate and recall.
"""

from __future__ import annotations

import argparse
import os
import re
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np
import psycopg
from psycopg.copy import QueuedLibpqWriter

from covr_core.platform import migrations
from covr_core.platform.db import start_embedded
from covr_core.media.neardup import explain, find_near_duplicates, find_near_duplicates_bruteforce

RADII = (4, 6, 8)
# size -> (p99 ceiling in ms, minimum p50 speed-up over the scan)
TARGETS = {1_000_000: (3.0, 15.0), 10_000_000: (5.0, 100.0)}
NORMAL_PATH_ROWS = 100_000
COPY_BATCH = 200_000
# Dropped for the bulk load and rebuilt after: what a restore would do, not what ingestion does.
SECONDARY_INDEXES = {
    "image_sha256_idx": "create index image_sha256_idx on media.image (sha256) where status = 'accepted'",
    "image_copy_idx": "create index image_copy_idx on media.image (copy_id)",
    "image_uploader_idx": "create index image_uploader_idx on media.image (uploader_id, created_at)",
    **{
        f"image_phash_c{i}_idx": f"create index image_phash_c{i}_idx on media.image (phash_c{i}) "
        "include (phash, image_id) where phash is not null"
        for i in range(3)
    },
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000000,10000000", help="comma-separated row counts, grown in order")
    parser.add_argument("--quick", action="store_true", help="sizes 100k and 1M")
    parser.add_argument("--lookups", type=int, default=300, help="MIH lookups per radius")
    parser.add_argument("--seed", type=int, default=20240611)
    args = parser.parse_args()
    sizes = [100_000, 1_000_000] if args.quick else sorted(int(s.replace("_", "")) for s in args.sizes.split(","))

    rng = np.random.default_rng(args.seed)
    with tempfile.TemporaryDirectory(prefix="covr-bench-neardup-") as tmp:
        server = _start_tuned(Path(tmp) / "data")
        try:
            url = _scratch_database(server.get_uri())
            with psycopg.connect(url, autocommit=True) as conn:
                run(conn, url, sizes, args.lookups, rng)
        finally:
            server.cleanup()


def _start_tuned(data_dir: Path):
    """The embedded server restarted with a production-like buffer cache and room for bulk WAL."""
    server = start_embedded(data_dir)
    with psycopg.connect(server.get_uri(), autocommit=True) as conn:
        # 128 MB (the default) cannot hold the three chunk indexes at 10M rows (~1.2 GB).
        conn.execute("alter system set shared_buffers = '2GB'")
        # Fewer checkpoints during multi-GB loads.
        conn.execute("alter system set max_wal_size = '8GB'")
    server.cleanup()  # shared_buffers only changes on a restart
    server = start_embedded(data_dir)
    with psycopg.connect(server.get_uri()) as conn:
        settings = conn.execute(
            "select string_agg(name || '=' || current_setting(name), ', ') from pg_settings "
            "where name in ('shared_buffers', 'max_wal_size', 'max_parallel_workers_per_gather')"
        ).fetchone()[0]
        version = conn.execute("show server_version").fetchone()[0]
    print(f"PostgreSQL {version} (embedded): {settings}")
    return server


def _scratch_database(admin_url: str) -> str:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute("drop database if exists covr_bench_neardup")
        conn.execute("create database covr_bench_neardup")
    base, _, query = admin_url.partition("?")
    url = f"{base.rsplit('/', 1)[0]}/covr_bench_neardup" + (f"?{query}" if query else "")
    with psycopg.connect(url) as conn:
        migrations.migrate(conn)
    return url


def run(conn, url: str, sizes: list[int], lookups: int, rng: np.random.Generator) -> None:
    uploader = conn.execute(
        "insert into contact.user (handle, display_name) values ('bench', 'Bench') returning user_id"
    ).fetchone()[0]
    stored = np.empty(0, dtype=np.int64)
    rows = []
    for size in sizes:
        new = rng.integers(np.iinfo(np.int64).min, np.iinfo(np.int64).max, size=size - len(stored), dtype=np.int64)
        _load(conn, uploader, start=len(stored), phashes=new)
        stored = np.concatenate([stored, new])
        t0 = time.perf_counter()
        # Sets the visibility map (index-only scans need it) and the planner's statistics.
        conn.execute("vacuum analyze media.image")
        print(f"  vacuum analyze: {time.perf_counter() - t0:.1f} s", flush=True)
        _warm(conn)
        _print_plan(conn, int(stored[0]))
        with psycopg.connect(url, autocommit=True) as scan_conn:
            for radius in RADII:
                rows.append(_measure(conn, scan_conn, stored, radius, lookups, rng))
                _print_row(rows[-1])
    print()
    print("summary")
    _print_header()
    for row in rows:
        _print_row(row)


def _load(conn, uploader, *, start: int, phashes: np.ndarray) -> None:
    """COPY the rows: the first batch through the normal path, the rest with secondary indexes dropped."""
    total = len(phashes)
    print(f"\nloading {total:,} rows (table grows to {start + total:,})", flush=True)
    normal = min(NORMAL_PATH_ROWS, total) if start == 0 else 0
    if normal:
        t0 = time.perf_counter()
        _copy(conn, uploader, start, phashes[:normal])
        elapsed = time.perf_counter() - t0
        print(f"  normal path (every index in place): {normal / elapsed:,.0f} rows/s over {normal:,} rows")
    bulk = phashes[normal:]
    if not len(bulk):
        return
    t0 = time.perf_counter()
    for name in SECONDARY_INDEXES:
        conn.execute(f"drop index media.{name}")
    _copy(conn, uploader, start + normal, bulk)
    copied = time.perf_counter() - t0
    conn.execute("set maintenance_work_mem = '1GB'")
    for create in SECONDARY_INDEXES.values():
        conn.execute(create)
    conn.execute("reset maintenance_work_mem")
    elapsed = time.perf_counter() - t0
    print(
        f"  bulk (6 secondary indexes dropped, pk and object_key kept): COPY {len(bulk) / copied:,.0f} rows/s, "
        f"index rebuild {elapsed - copied:.1f} s, overall {len(bulk) / elapsed:,.0f} rows/s",
        flush=True,
    )


def _copy(conn, uploader, start: int, phashes: np.ndarray) -> None:
    columns = "object_key, uploader_id, status, sha256, phash, byte_size, format"
    with conn.cursor() as cur:
        # The queued writer sends on its own thread while this one formats the next batch.
        with cur.copy(f"copy media.image ({columns}) from stdin", writer=QueuedLibpqWriter(cur)) as copy:
            for offset in range(0, len(phashes), COPY_BATCH):
                batch = phashes[offset : offset + COPY_BATCH].tolist()
                first = start + offset
                # Zero-padded keys keep the unique object_key index appending at its right edge.
                copy.write(
                    "".join(
                        f"bench/{i:010d}\t{uploader}\taccepted\t{i:064x}\t{h}\t1000\tjpeg\n"
                        for i, h in enumerate(batch, first)
                    )
                )


def _warm(conn) -> None:
    """One full index-only pass over each chunk index, as steady lookup traffic would keep them cached."""
    t0 = time.perf_counter()
    conn.execute("set enable_seqscan = off")
    conn.execute("set enable_bitmapscan = off")
    for i in range(3):
        conn.execute(f"select count(*) from media.image where phash is not null and phash_c{i} >= 0")
    conn.execute("reset enable_seqscan")
    conn.execute("reset enable_bitmapscan")
    print(f"  chunk indexes warmed: {time.perf_counter() - t0:.1f} s", flush=True)


def _queries(stored: np.ndarray, radius: int, count: int, rng: np.random.Generator) -> list[int]:
    """Half uniform random hashes, half stored ones with up to `radius` bits flipped (a match exists)."""
    queries = []
    for i in range(count):
        if i % 2:
            queries.append(int(rng.integers(np.iinfo(np.int64).min, np.iinfo(np.int64).max, dtype=np.int64)))
        else:
            flips = rng.choice(64, size=int(rng.integers(0, radius + 1)), replace=False)
            mask = np.uint64(sum(1 << int(b) for b in flips))
            queries.append(int((stored[rng.integers(len(stored))].view(np.uint64) ^ mask).view(np.int64)))
    return queries


def _measure(conn, scan_conn, stored: np.ndarray, radius: int, lookups: int, rng) -> dict:
    queries = _queries(stored, radius, lookups, rng)
    scans = lookups if len(stored) <= 200_000 else 30 if len(stored) <= 2_000_000 else 10
    # Parallel workers only add start-up latency to a few tiny index scans; the scan keeps them.
    conn.execute("set max_parallel_workers_per_gather = 0")
    for q in queries[:10]:  # warm the caches and let psycopg prepare the statement
        find_near_duplicates(conn, q, radius)
    mih_ms, found, expected = [], 0, 0
    results = {}
    for q in queries:
        t0 = time.perf_counter()
        result = find_near_duplicates(conn, q, radius)
        mih_ms.append((time.perf_counter() - t0) * 1000)
        results[q] = result
    scan_ms, scan_agrees = [], True
    for q in queries[:scans]:
        t0 = time.perf_counter()
        baseline = find_near_duplicates_bruteforce(scan_conn, q, radius)
        scan_ms.append((time.perf_counter() - t0) * 1000)
        scan_agrees &= baseline == results[q]
    # Recall over every sampled query, against an in-memory brute force of all stored hashes.
    for q in queries:
        # Unsigned view: numpy's bitwise_count of a signed value counts the bits of its absolute value.
        distances = np.bitwise_count((stored ^ np.int64(q)).view(np.uint64))
        near = distances <= radius
        truth = Counter(zip(distances[near].tolist(), stored[near].tolist()))
        got = Counter((n.distance, n.phash) for n in results[q])
        found += sum((truth & got).values())
        expected += sum(truth.values())
    return {
        "size": len(stored),
        "radius": radius,
        "mih_p50": float(np.percentile(mih_ms, 50)),
        "mih_p99": float(np.percentile(mih_ms, 99)),
        "scan_p50": float(np.percentile(scan_ms, 50)),
        "scans": scans,
        "lookups": len(queries),
        "matches": expected,
        "recall": found / expected if expected else 1.0,
        "scan_agrees": scan_agrees,
        # Other processes on a small machine show up in p99 first; the load says how busy it was.
        "load": os.getloadavg()[0],
    }


def _print_header() -> None:
    print(
        f"{'rows':>11} {'r':>2} {'MIH p50':>8} {'MIH p99':>8} {'scan p50':>9} {'speed-up':>9} "
        f"{'recall':>7} {'matches':>8} {'load':>5}  target"
    )


def _print_row(row: dict) -> None:
    speedup = row["scan_p50"] / row["mih_p50"]
    target = TARGETS.get(row["size"])
    if target:
        p99_max, speedup_min = target
        p99_ok = "met" if row["mih_p99"] <= p99_max else "MISSED"
        speedup_ok = "met" if speedup >= speedup_min else "MISSED"
        goal = f"p99 <= {p99_max:g} ms: {p99_ok}; >= {speedup_min:g}x: {speedup_ok}"
    else:
        goal = "-"
    agree = "" if row["scan_agrees"] else "  (scan disagrees!)"
    print(
        f"{row['size']:>11,} {row['radius']:>2} {row['mih_p50']:>5.2f} ms {row['mih_p99']:>5.2f} ms "
        f"{row['scan_p50']:>6.1f} ms {speedup:>8.0f}x {row['recall']:>7.3f} {row['matches']:>8} "
        f"{row['load']:>5.1f}  {goal}{agree}",
        flush=True,
    )


def _print_plan(conn, phash: int) -> None:
    conn.execute("set max_parallel_workers_per_gather = 0")
    plan = explain(conn, phash, 8, analyze=True)
    print("  plan of one lookup at r = 8 (probe arrays elided):")
    for line in plan.splitlines():
        print("    " + re.sub(r"'\{[^}]*\}'", "'{...}'", line))
    _print_header()


if __name__ == "__main__":
    main()
