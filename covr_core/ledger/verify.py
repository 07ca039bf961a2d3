"""Verification of every chain, its head and the latest signed checkpoint; each problem names copy and entry.

Checks, per copy in copy-id order and per entry in seq order:
- hash mismatch: sha256(tag || stored canonical bytes) is not the stored entry_hash;
- content mismatch: the stored columns (payload and refs JSONB, ts, type, users, seq, prev_hash) are not what
  the hashed bytes say (an edit of the JSONB alone, or of the timestamp);
- missing entry: a gap in seq (a deleted middle entry), or entries a checkpoint covered that are gone;
- broken link: prev_hash is not the previous entry's hash (genesis: 32 zero bytes);
- head mismatch: ledger.chain's head is not the last entry;
- checkpoint mismatch: the chain no longer contains the head the latest checkpoint signed (a rewritten
  history whose successors were all recomputed, a truncated tail with its head moved back), or the stored
  checkpoints and leaves disagree with the signed root or with each other;
- bad signature: the latest checkpoint is not signed by a trusted key.
Postgres streams the rows (COPY) while Python hashes, links and re-encodes them; the columns must re-encode
to the hashed bytes byte for byte. Everything is read in one REPEATABLE READ snapshot (when the caller has no
transaction open), so an append that commits during verification is either wholly seen or not at all; a
large ledger is scanned by one worker process per core over copy-id ranges, all in that same snapshot.

Speed (bench/ledger.py). The content check used to rebuild the whole framed entry as a dict and re-encode it
with the json module's Python wrappers, per row. It now assembles the very same bytes piece by piece: the
fixed framing from the columns (uuids, digits and hex need no JSON encoding) around the canonical JSON of the
payload and refs columns, made by the json module's C scanner and encoder called directly (and cached for
repeated values such as `{}`). json.dumps of a dict with sorted keys is exactly that concatenation, so the
comparison is byte for byte the old one; whatever the cheap path cannot build or does not match goes to
`_agrees`, the old check (with its rfc8785 fallback), so no verdict changes. Rows come as binary COPY, parsed
by psycopg's C loaders (see _ENTRIES). Comparing in Postgres instead
(jsonb equality of the parsed canonical bytes) was measured slower on this 2-core box (parsing 300 bytes
into jsonb costs more than Python's C json) and would no longer check that the hashed bytes are canonical.
"""

from __future__ import annotations

import hashlib
import json
import json.encoder
import json.scanner
import logging
import multiprocessing
import os
import time
import uuid
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass, field

import psycopg
from psycopg import sql

from covr_core.ledger import canonical, checkpoint as checkpoints, merkle

HASH_MISMATCH = "hash mismatch"
CONTENT_MISMATCH = "content mismatch"
BROKEN_LINK = "broken link"
MISSING_ENTRY = "missing entry"
HEAD_MISMATCH = "head mismatch"
CHECKPOINT_MISMATCH = "checkpoint mismatch"
BAD_SIGNATURE = "bad signature"

log = logging.getLogger(__name__)


# Read in COPY's binary format: bytea arrives raw (no hex to make and unmake) and Postgres spends a third less
# per row. ts is read as the int8 its binary form is, microseconds since 2000-01-01 UTC (Postgres's epoch):
# the epoch microseconds hashed are that plus _PG_EPOCH_US, without Postgres computing them in numeric.
_ENTRIES = """
select e.copy_id::text, e.seq, e.prev_hash, e.entry_hash, e.canonical, e.ts, e.entry_type, e.from_user_id::text,
       e.to_user_id::text, e.refs::text, e.payload::text
from ledger.entry e {where} order by e.copy_id, e.seq
"""
_ENTRY_TYPES = ["text", "int8", "bytea", "bytea", "bytea", "int8", "text", "text", "text", "text", "text"]
_PG_EPOCH_US = 946_684_800_000_000
# The benchmark's baseline reads exactly these rows and columns, without checking anything.
RAW_READ = """
copy (select e.copy_id, e.seq, encode(e.prev_hash, 'hex'), encode(e.entry_hash, 'hex'), encode(e.canonical, 'hex'),
             e.ts, e.entry_type, e.from_user_id, e.to_user_id, e.refs, e.payload
      from ledger.entry e order by e.copy_id, e.seq) to stdout
"""


@dataclass(frozen=True)
class Problem:
    reason: str
    detail: str
    copy_id: str | None = None
    seq: int | None = None

    def __str__(self) -> str:
        where = []
        if self.copy_id is not None:
            where.append(f"copy {self.copy_id}")
        if self.seq is not None:
            where.append(f"entry {self.seq}")
        return f"{' '.join(where) or 'ledger'}: {self.reason}: {self.detail}"


@dataclass
class Report:
    copies: int = 0
    entries: int = 0
    checkpoint_id: int | None = None
    problems: list[Problem] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def first(self) -> Problem | None:
        return self.problems[0] if self.problems else None

    def as_dict(self) -> dict:
        return {
            "ok": self.ok,
            "copies": self.copies,
            "entries": self.entries,
            "checkpoint_id": self.checkpoint_id,
            "seconds": round(self.seconds, 3),
            "problems": [asdict(p) | {"message": str(p)} for p in self.problems],
        }


def verify(
    conn: psycopg.Connection,
    *,
    copy_id: str | None = None,
    trusted_keys: dict | None = None,
    exported: list[dict] | None = None,
    workers: int | None = None,
) -> Report:
    """Verify every chain (or one copy's) against its head and the latest checkpoint.

    `trusted_keys` maps key ids to Ed25519 public keys (checkpoint.trusted_keys(settings)); `exported` are
    checkpoint documents read back from the object store, compared with the database's. `workers`: processes
    that scan copy-id ranges side by side; by default one per core once the ledger holds PARALLEL_FROM
    entries, else this process alone (a worker costs a Python start-up).
    """
    started = time.perf_counter()
    report = Report()
    if copy_id is not None:
        try:
            copy_id = str(uuid.UUID(str(copy_id)))
        except ValueError:
            report.problems.append(Problem(MISSING_ENTRY, f"{copy_id!r} is not a copy id"))
            return report
    if conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE:
        with conn.transaction():
            conn.execute("set transaction isolation level repeatable read, read only")
            return _verify(conn, report, copy_id, trusted_keys, exported, started, workers, True)
    return _verify(conn, report, copy_id, trusted_keys, exported, started, workers, False)


def _verify(conn, report: Report, copy_id, trusted_keys, exported, started, workers, own_snapshot) -> Report:
    leaves = _check_checkpoints(conn, report, trusted_keys or {}, exported or [], copy_id)
    chain_problems: list[Problem] = []
    # Workers share this transaction's snapshot, so only a transaction opened here can hand it out.
    bounds = None if copy_id or not own_snapshot else _parts(conn, workers)
    if bounds:
        try:
            _scan_in_parallel(conn, bounds, leaves, chain_problems, report)
        except BrokenProcessPool as exc:
            # A worker died (killed, out of memory, or a caller's main module that is not import-safe, which
            # spawned processes re-run): nothing of theirs was kept, so the scan is made here instead.
            log.warning("ledger verification workers failed (%s); verifying in this process", exc)
            bounds = None
    if not bounds:
        where = sql.SQL("where e.copy_id = {}").format(sql.Literal(copy_id)) if copy_id else sql.SQL("")
        _scan(conn, sql.SQL(_ENTRIES).format(where=where), _heads(conn, copy_id), leaves, chain_problems, report)
    # Copy ids are canonical uuid text here (Postgres's, or str(UUID)), which sorts as the uuids do: comparing
    # strings, not UUID objects, saves ~1 s at 100k copies.
    chain_problems.sort(key=lambda p: (p.copy_id, p.seq or 0))
    report.problems.extend(chain_problems)
    report.seconds = time.perf_counter() - started
    return report


# Below this many entries one process verifies faster than starting workers (~0.3 s each) would.
PARALLEL_FROM = 200_000


def _parts(conn, workers: int | None) -> list[tuple[str | None, str | None]] | None:
    """Copy-id ranges [lower, upper) of about equal size, one per worker; None to scan in this process."""
    with conn.cursor(row_factory=psycopg.rows.tuple_row) as cur:
        if workers is None:
            total = cur.execute("select coalesce(sum(head_seq), 0) from ledger.chain").fetchone()[0]
            workers = (os.cpu_count() or 1) if total >= PARALLEL_FROM else 1
        if workers <= 1:
            return None
        cuts = [str(c) for (c,) in cur.execute(
            "select distinct on (part) copy_id from (select copy_id, ntile(%s) over (order by copy_id) as part "
            "from ledger.chain) t where part > 1 order by part, copy_id", (workers,))]
    edges = [None, *cuts, None]
    return list(zip(edges, edges[1:]))


def _scan_in_parallel(conn, bounds, leaves, problems, report) -> None:
    """_scan over copy-id ranges in worker processes, all reading this transaction's snapshot.

    Python's per-row hashing and re-encoding is what limits a scan (Postgres sends rows ~3x faster than one
    process checks them), so a process per core is the speed-up. The snapshot is exported
    (pg_export_snapshot) and imported by every worker, so together they read the one state this transaction
    sees. Workers are spawned, not forked: a forked child would share this connection's socket."""
    with conn.cursor(row_factory=psycopg.rows.tuple_row) as cur:
        snapshot = cur.execute("select pg_export_snapshot()").fetchone()[0]
    conninfo = psycopg.conninfo.make_conninfo(conn.info.dsn, password=conn.info.password)
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=len(bounds), mp_context=context) as pool:
        jobs = [pool.submit(_verify_part, conninfo, snapshot, lower, upper,
                            {c: v for c, v in leaves.items() if _within(c, lower, upper)}, report.checkpoint_id)
                for lower, upper in bounds]
        results = [job.result() for job in jobs]  # all or nothing: a failed worker raises before any is kept
    for found, copies, entries in results:
        problems.extend(found)
        report.copies += copies
        report.entries += entries


def _within(copy_id: str, lower: str | None, upper: str | None) -> bool:
    # Canonical uuid text (lower-case hex, fixed width) sorts as Postgres sorts uuids: byte by byte.
    return (lower is None or copy_id >= lower) and (upper is None or copy_id < upper)


def _verify_part(conninfo: str, snapshot: str, lower: str | None, upper: str | None, leaves: dict,
                 checkpoint_id: int | None) -> tuple[list[Problem], int, int]:
    """One worker's range: its heads and entries, read in the exported snapshot."""
    clauses = []
    if lower is not None:
        clauses.append(sql.SQL("copy_id >= {}").format(sql.Literal(lower)))
    if upper is not None:
        clauses.append(sql.SQL("copy_id < {}").format(sql.Literal(upper)))
    where = sql.SQL("where ") + sql.SQL(" and ").join(clauses)
    report = Report(checkpoint_id=checkpoint_id)
    problems: list[Problem] = []
    with psycopg.connect(conninfo, autocommit=True) as conn, conn.transaction():
        conn.execute("set transaction isolation level repeatable read, read only")
        conn.execute(sql.SQL("set transaction snapshot {}").format(sql.Literal(snapshot)))
        with conn.cursor(row_factory=psycopg.rows.tuple_row) as cur:
            cur.execute(sql.SQL("select copy_id::text, head_seq, head_hash from ledger.chain {}").format(where))
            heads = {c: (s, bytes(h)) for c, s, h in cur}
        entries_where = sql.SQL("where ") + sql.SQL(" and ").join(sql.SQL("e.") + c for c in clauses)
        _scan(conn, sql.SQL(_ENTRIES).format(where=entries_where), heads, leaves, problems, report)
    return problems, report.copies, report.entries


def _heads(conn, copy_id) -> dict:
    with conn.cursor(row_factory=psycopg.rows.tuple_row) as cur:
        if copy_id:
            cur.execute("select copy_id::text, head_seq, head_hash from ledger.chain where copy_id = %s", (copy_id,))
        else:
            cur.execute("select copy_id::text, head_seq, head_hash from ledger.chain")
        return {c: (s, bytes(h)) for c, s, h in cur}


def _scan(conn, query, heads, leaves, problems, report) -> None:
    """Every entry `query` reads, in copy and seq order, then the chains of `heads` and `leaves` it never saw."""
    tag = canonical.ENTRY_TAG
    sha256 = hashlib.sha256
    framed = _framed_bytes
    current = None
    seen = set()
    expect_seq = 1
    last_hash = canonical.GENESIS_HASH
    bad = False
    leaf = None
    copies = entries = 0

    def close(cid, last_seq, last_hash, bad):
        # End of one copy's entries: its head, then the latest checkpoint's leaf.
        if bad:
            return
        head_seq, head_hash = heads.get(cid, (None, None))
        if head_seq is not None and head_seq > last_seq:
            problems.append(Problem(MISSING_ENTRY, f"ledger.chain says head {head_seq}, the chain ends at entry "
                                    f"{last_seq}: the tail is gone", cid, last_seq + 1))
            return
        if head_seq != last_seq or head_hash != last_hash:
            problems.append(Problem(HEAD_MISMATCH, f"ledger.chain says head {head_seq} ({_hex16(head_hash)}…), "
                                    f"the last entry is {last_seq} ({_hex16(last_hash)}…)", cid, last_seq))
            return
        leaf = leaves.get(cid)
        if leaf is not None and leaf[0] > last_seq:
            problems.append(Problem(CHECKPOINT_MISMATCH, f"checkpoint {report.checkpoint_id} signed head "
                                    f"{leaf[0]}, but the chain ends at entry {last_seq}: entries from "
                                    f"{last_seq + 1} on are gone", cid, last_seq + 1))

    with conn.cursor() as cur, cur.copy(sql.SQL("copy ({}) to stdout (format binary)").format(query)) as stream:
        stream.set_types(_ENTRY_TYPES)
        for f in stream.rows():
            cid = f[0]
            if cid != current:
                if current is not None:
                    close(current, expect_seq - 1, last_hash, bad)
                current = cid
                seen.add(cid)
                copies += 1
                expect_seq, last_hash, bad = 1, canonical.GENESIS_HASH, False
                leaf = leaves.get(cid)
            entries += 1
            if bad:
                continue
            seq = f[1]
            if seq != expect_seq:
                problems.append(Problem(MISSING_ENTRY, f"entry {expect_seq} is not stored (the next stored is "
                                        f"{seq})", cid, expect_seq))
                bad = True
                continue
            canon = f[4] or b""
            if sha256(tag + canon).digest() != f[3]:
                problems.append(Problem(HASH_MISMATCH, "its hashed bytes do not hash to its entry_hash", cid, seq))
                bad = True
                continue
            if framed(f) != canon and not _agrees(f, canon):
                problems.append(Problem(CONTENT_MISMATCH, "its stored columns (payload, refs, ts, type, "
                                        "users) differ from the hashed bytes", cid, seq))
                bad = True
                continue
            if f[2] != last_hash:
                problems.append(Problem(BROKEN_LINK, f"prev_hash {_hex16(f[2])}… is not entry {seq - 1}'s hash "
                                        f"{_hex16(last_hash)}…", cid, seq))
                bad = True
                continue
            last_hash = f[3]
            expect_seq = seq + 1
            if leaf is not None and leaf[0] == seq and leaf[1] != last_hash:
                problems.append(Problem(CHECKPOINT_MISMATCH, f"checkpoint {report.checkpoint_id} signed "
                                        f"hash {_hex16(leaf[1])}… for entry {seq}: this entry or one "
                                        "before it was rewritten", cid, seq))
                bad = True
        if current is not None:
            close(current, expect_seq - 1, last_hash, bad)
    # Chains that have a head (or a checkpointed leaf) but no entry left at all.
    for cid in set(heads).union(leaves).difference(seen):
        leaf = leaves.get(cid)
        if leaf is not None:
            problems.append(Problem(CHECKPOINT_MISMATCH, f"checkpoint {report.checkpoint_id} signed head "
                                    f"{leaf[0]}, but the chain has no entry left", cid, 1))
        elif heads[cid][0] > 0:
            problems.append(Problem(MISSING_ENTRY, f"the head says {heads[cid][0]} entries, none is stored", cid, 1))
    report.copies += copies
    report.entries += entries


def _hex16(value) -> str:
    return bytes(value or b"").hex()[:16]


_FRAME = ('{"copy_id":"%s","entry_type":%s,"from_user_id":%s,"payload":%s,"prev_hash":"%s","refs":%s,'
          '"seq":%d,"to_user_id":%s,"ts_us":%d,"v":' + str(canonical.VERSION) + '}')
_NOT_JSON = b"\x00not json"  # never equal to hashed bytes: the caller falls back to _agrees


def _framed_bytes(f) -> bytes:
    """The bytes _agrees' fast path builds from the columns, assembled piece by piece (the same bytes, cheaper).

    json.dumps of the framed dict with sorted keys is the concatenation, in sorted key order, of each key and
    its value's encoding, so this is byte for byte `_encode(expected)` of _agrees. Anything it cannot build
    the cheap way returns bytes that never match, and the caller asks _agrees, which decides exactly as before.
    """
    try:
        return (_FRAME % (
            f[0], _json_text(f[6]), _user(f[7]), _jsonb_canonical(f[10]), f[2].hex(), _jsonb_canonical(f[9]),
            f[1], _user(f[8]), f[5] + _PG_EPOCH_US,
        )).encode()
    except (ValueError, RecursionError, StopIteration, TypeError, AttributeError, UnicodeError):
        return _NOT_JSON


def _user(value: str | None) -> str:
    return "null" if value is None else '"' + value + '"'


_canonical_cache: dict[str, str] = {}
_text_cache: dict[str, str] = {}


def _jsonb_canonical(text: str) -> str:
    """A JSONB column's text re-encoded as _agrees does (sorted keys, no spaces); repeats are cached."""
    out = _canonical_cache.get(text)
    if out is None:
        if len(_canonical_cache) > 65536:
            _canonical_cache.clear()
        obj, end = _scan_once(text, 0)
        if end != len(text):
            raise ValueError("trailing data")
        out = _canonical_cache[text] = "".join(_c_encode(obj, 0))
    return out


def _refuse(value):
    raise TypeError(f"{type(value).__name__} is not JSON")


# The C halves of _decode and _encode called directly, without the per-call set-up of their Python wrappers;
# the same encoder settings as _encode (sorted keys, no spaces, non-ASCII kept, NaN refused).
_scan_once = json.scanner.c_make_scanner(json.JSONDecoder()) if json.scanner.c_make_scanner else None
_c_encode = (json.encoder.c_make_encoder(None, _refuse, json.encoder.c_encode_basestring, None, ":", ",", True,
                                         False, False)
             if json.encoder.c_make_encoder and json.encoder.c_encode_basestring else None)


def _json_text(value: str) -> str:
    out = _text_cache.get(value)
    if out is None:
        if len(_text_cache) > 1024:
            _text_cache.clear()
        out = _text_cache[value] = _encode(value)
    return out


def _agrees(f, canon: bytes) -> bool:
    """Whether the stored columns re-encode to exactly the hashed bytes (byte for byte: `true` is not `1`)."""
    try:
        expected = {
            "v": canonical.VERSION, "copy_id": f[0], "seq": f[1], "prev_hash": f[2].hex(), "ts_us": f[5] + _PG_EPOCH_US,
            "entry_type": f[6], "from_user_id": f[7], "to_user_id": f[8],
            "refs": _decode(f[9]), "payload": _decode(f[10]),
        }
    except (ValueError, TypeError, AttributeError):
        return False
    # json.dumps with sorted keys is RFC 8785 for I-JSON except key order beyond the BMP; rfc8785 decides then.
    try:
        if _encode(expected).encode() == canon:
            return True
    except (ValueError, TypeError, UnicodeError):
        return False
    try:
        return canonical.canonical_bytes(expected) == canon
    except Exception:  # noqa: BLE001 - a tampered value rfc8785 cannot even encode is a mismatch
        return False


_encode = json.JSONEncoder(ensure_ascii=False, sort_keys=True, separators=(",", ":"), allow_nan=False).encode
_decode = json.JSONDecoder().decode


def _check_checkpoints(conn, report: Report, keys: dict, exported: list[dict], copy_id) -> dict:
    """Checks the checkpoints themselves; returns the latest one's leaves {copy_id: (seq, hash)}."""
    stored = checkpoints.all_checkpoints(conn)
    by_id = {cp.checkpoint_id: cp for cp in stored}
    for doc in exported:
        try:
            ext = checkpoints.parse_document(doc)
        except (KeyError, ValueError) as exc:
            report.problems.append(Problem(CHECKPOINT_MISMATCH, f"an exported checkpoint cannot be read: {exc}"))
            continue
        mine = by_id.get(ext.checkpoint_id)
        if mine is None:
            report.problems.append(Problem(CHECKPOINT_MISMATCH, f"checkpoint {ext.checkpoint_id} was exported to "
                                           "the object store but is missing from the database"))
        elif (mine.body, mine.signature) != (ext.body, ext.signature):
            report.problems.append(Problem(CHECKPOINT_MISMATCH, f"checkpoint {ext.checkpoint_id} in the database "
                                           "differs from the copy exported to the object store"))
    if not stored:
        return {}
    prev_hash = checkpoints.GENESIS_CHECKPOINT_HASH
    for expected_id, cp in enumerate(stored, start=1):
        if cp.checkpoint_id != expected_id:
            report.problems.append(Problem(CHECKPOINT_MISMATCH, f"checkpoint {expected_id} is missing"))
            break
        if cp.prev_checkpoint_hash != prev_hash:
            report.problems.append(Problem(CHECKPOINT_MISMATCH, f"checkpoint {cp.checkpoint_id} does not follow "
                                           f"checkpoint {expected_id - 1}"))
            break
        prev_hash = cp.body_hash
    latest = stored[-1]
    report.checkpoint_id = latest.checkpoint_id
    problem = checkpoints.signature_problem(latest, keys)
    if problem:
        report.problems.append(Problem(BAD_SIGNATURE, problem))
        return {}
    rows = checkpoints.leaves(conn, latest.checkpoint_id)
    tree_root = merkle.root([merkle.leaf_hash(merkle.leaf_data(c, s, h)) for c, s, h in rows])
    if len(rows) != latest.tree_size or tree_root != latest.root_hash:
        report.problems.append(Problem(CHECKPOINT_MISMATCH, f"the stored leaves of checkpoint "
                                       f"{latest.checkpoint_id} do not hash to its signed root"))
    leaves = {str(c): (s, h) for c, s, h in rows}
    if copy_id is not None:
        leaves = {copy_id: leaves[copy_id]} if copy_id in leaves else {}
    return leaves
