"""Bench the provenance ledger: append throughput, `covr ledger verify` and a checkpoint; run by hand.

    .venv/bin/python bench/ledger.py                        # 1M entries over 100k copies (the issue's size)
    .venv/bin/python bench/ledger.py --entries 200000       # copies default to entries / 10

A scratch database on a throwaway embedded server, migrated like production. The entries are bulk-loaded
with COPY (real canonical bytes and hashes, chained, the same bytes the append path writes); then:
- baseline: the raw read of the same rows and columns verification reads (`copy (select ...) to stdout`);
- verify: covr_core.ledger.verify.verify, what `covr ledger verify` runs, in entries/s and as a ratio to
  the baseline (target: within 2x, and >= 100k entries/s);
- checkpoint: checkpoint.create over every copy's head (target: <= 5 s for 100k copies), the first one and,
  after the appends, the next (which compares with the previous leaves and stores only the moved heads);
- appends: chain.append at 1 and 16 concurrent writers over random copies, then a fork and gap count
  (target: zero) and a full verification.
Figures on a shared 2-core box are noisy.
"""

from __future__ import annotations

import argparse
import hashlib
import random
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from covr_core.ledger import canonical, chain, checkpoint, verify  # noqa: E402
from covr_core.platform import migrations  # noqa: E402
from covr_core.platform.db import start_embedded  # noqa: E402

BASE_TS_US = 1_750_000_000_000_000


def _entry(copy_id: str, seq: int, prev: bytes, ts_us: int, n: int) -> bytes:
    # RFC 8785 of the framed entry, written by hand for speed; checked against rfc8785 below.
    return (f'{{"copy_id":"{copy_id}","entry_type":"request_created","from_user_id":null,'
            f'"payload":{{"n":{n}}},"prev_hash":"{prev.hex()}","refs":{{}},"seq":{seq},"to_user_id":null,'
            f'"ts_us":{ts_us},"v":1}}').encode()


def load(conn, entries: int, copies: int) -> None:
    sample = canonical.canonical_bytes(canonical.framed(
        copy_id=str(uuid.UUID(int=1)), seq=1, prev_hash=bytes(32), ts_us=BASE_TS_US, entry_type="request_created",
        from_user_id=None, to_user_id=None, refs={}, payload={"n": 0}))
    assert sample == _entry(str(uuid.UUID(int=1)), 1, bytes(32), BASE_TS_US, 0)
    user = conn.execute("insert into contact.user (handle, display_name) values ('bench', 'Bench') "
                        "returning user_id").fetchone()[0]
    book = conn.execute("insert into catalog.book (title) values ('Bench') returning book_id").fetchone()[0]
    rng = random.Random(1)
    ids = sorted(str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(copies))
    per = [entries // copies + (1 if i < entries % copies else 0) for i in range(copies)]
    with conn.cursor() as cur:
        with cur.copy("copy catalog.copy (copy_id, book_id, owner_id, current_holder_id) from stdin") as cp:
            for c in ids:
                cp.write_row((c, book, user, user))
        heads = []
        tag, sha = canonical.ENTRY_TAG, hashlib.sha256
        with cur.copy("copy ledger.entry (copy_id, seq, prev_hash, entry_hash, ts, entry_type, refs, payload, "
                      "canonical) from stdin") as cp:
            n = 0
            for c, count in zip(ids, per):
                prev = canonical.GENESIS_HASH
                for seq in range(1, count + 1):
                    ts_us = BASE_TS_US + n
                    data = _entry(c, seq, prev, ts_us, n)
                    digest = sha(tag + data).digest()
                    cp.write_row((c, seq, prev, digest, canonical.from_epoch_us(ts_us), "request_created", "{}",
                                  f'{{"n": {n}}}', data))
                    prev = digest
                    n += 1
                heads.append((c, count, prev))
        with cur.copy("copy ledger.chain (copy_id, head_seq, head_hash) from stdin") as cp:
            for row in heads:
                cp.write_row(row)
    conn.commit()


def raw_read(conn) -> tuple[float, int]:
    started = time.perf_counter()
    size = 0
    with conn.cursor() as cur, cur.copy(verify.RAW_READ) as stream:
        for block in stream:
            size += len(block)
    return time.perf_counter() - started, size


def appends(db_url: str, copies: list[str], writers: int, per_writer: int) -> float:
    barrier = threading.Barrier(writers)

    def work(k: int):
        rng = random.Random(k)
        with psycopg.connect(db_url, autocommit=True) as conn:
            barrier.wait()
            for _ in range(per_writer):
                chain.append(conn, copy_id=rng.choice(copies), entry_type="request_accepted", payload={"w": k})

    threads = [threading.Thread(target=work, args=(k,)) for k in range(writers)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return writers * per_writer / (time.perf_counter() - started)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--copies", type=int, help="default: entries / 10")
    parser.add_argument("--appends", type=int, default=2000, help="appends per concurrency level")
    args = parser.parse_args()
    copies = args.copies or max(1, args.entries // 10)

    with tempfile.TemporaryDirectory(prefix="covr-bench-ledger-") as tmp:
        server = start_embedded(Path(tmp) / "pg")
        try:
            admin = server.get_uri()
            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute("create database bench_ledger")
            base, _, query = admin.partition("?")
            db_url = f"{base.rsplit('/', 1)[0]}/bench_ledger" + (f"?{query}" if query else "")
            with psycopg.connect(db_url) as conn:
                migrations.migrate(conn)
                started = time.perf_counter()
                # The foreign key from ledger.entry to ledger.chain is checked per row; load chains first.
                conn.execute("alter table ledger.entry drop constraint entry_copy_id_fkey")
                load(conn, args.entries, copies)
                conn.execute("alter table ledger.entry add constraint entry_copy_id_fkey foreign key (copy_id) "
                             "references ledger.chain")
                conn.commit()
                conn.autocommit = True
                conn.execute("vacuum analyze ledger.entry")
                conn.execute("vacuum analyze ledger.chain")
                print(f"loaded {args.entries:,} entries over {copies:,} copies in {time.perf_counter() - started:.1f} s")
            with psycopg.connect(db_url, autocommit=True) as conn:
                raw_read(conn)  # warm the cache for both
                base_s, size = min(raw_read(conn) for _ in range(2))
                runs = [verify.verify(conn) for _ in range(2)]
                report = min(runs, key=lambda r: r.seconds)
                assert report.ok and report.entries == args.entries, report.first
                rate = report.entries / report.seconds
                print(f"baseline raw read: {base_s:.2f} s ({args.entries / base_s:,.0f} rows/s, {size / 1e6:.0f} MB)")
                print(f"verify:            {report.seconds:.2f} s ({rate:,.0f} entries/s), "
                      f"{report.seconds / base_s:.2f}x the raw read (target <= 2x and >= 100,000 entries/s)")
                key = checkpoint.load_private_key(checkpoint.generate_private_key_pem())
                started = time.perf_counter()
                cp = checkpoint.create(conn, key)
                cp_s = time.perf_counter() - started
                print(f"checkpoint:        {cp_s:.2f} s for {cp.tree_size:,} copies (target <= 5 s for 100,000)")
                ids = [r[0] for r in conn.execute("select copy_id::text from ledger.chain")]
            for writers in (1, 16):
                rate = appends(db_url, ids, writers, max(1, args.appends // writers))
                print(f"appends:           {rate:,.0f}/s at {writers} writer(s)")
            hot = ids[:1]
            rate = appends(db_url, hot, 16, max(1, args.appends // 16))
            print(f"appends:           {rate:,.0f}/s at 16 writers on one copy")
            with psycopg.connect(db_url, autocommit=True) as conn:
                forks = conn.execute("select count(*) from (select copy_id, prev_hash from ledger.entry "
                                     "group by 1, 2 having count(*) > 1) f").fetchone()[0]
                gaps = conn.execute("select count(*) from ledger.chain c where head_seq <> "
                                    "(select count(*) from ledger.entry e where e.copy_id = c.copy_id)").fetchone()[0]
                report = verify.verify(conn, trusted_keys={cp.key_id: key.public_key()})
                print(f"after the appends: {forks} forks, {gaps} gaps, verification "
                      f"{'ok' if report.ok else report.first} (target: zero forks)")
                started = time.perf_counter()
                cp = checkpoint.create(conn, key)
                print(f"next checkpoint:   {time.perf_counter() - started:.2f} s for {cp.tree_size:,} copies "
                      "(reads the previous leaves, writes only the moved heads)")
        finally:
            server.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
