"""Inclusion proofs: a copy's signed head in the latest checkpoint, checkable with the checkpoint and a public key.

A proof carries the checkpoint document (signed body and signature), the copy's leaf, the RFC 9162 audit path
and the hashed bytes of every entry up to the signed head, so a third party can check the whole history
without the database: each entry hashes to the next one's prev_hash, the last one to the signed head, and the
head's leaf, with the path, to the signed root.
"""

from __future__ import annotations

import bisect
import hashlib
import json
import threading
import uuid

import psycopg
from cryptography.exceptions import InvalidSignature

from covr_core.ledger import canonical, checkpoint as checkpoints, merkle
from covr_core.shared.errors import NotFound

PROOF_TYPE = "covr.ledger.inclusion_proof"
_cache: dict[bytes, tuple[list, list]] = {}
_cache_lock = threading.Lock()


def _tree(conn, cp: checkpoints.Checkpoint) -> tuple[list, list]:
    """(sorted copy ids, levels) of a checkpoint, cached by its signed body (a tree that does not match its
    signed root is never cached, and a proof from it would not check)."""
    key = cp.body_hash
    with _cache_lock:
        hit = _cache.get(key)
    if hit is not None:
        return hit
    rows = checkpoints.leaves(conn, cp.checkpoint_id)
    levels = checkpoints.tree_of(rows)
    entry = ([c for c, _, _ in rows], levels)
    if (levels[-1][0] if rows else merkle.EMPTY_ROOT) == cp.root_hash:
        with _cache_lock:
            if len(_cache) >= 2:
                _cache.clear()
            _cache[key] = entry
    return entry


def inclusion_proof(conn: psycopg.Connection, copy_id: str) -> dict:
    cp = checkpoints.latest(conn)
    if cp is None:
        raise NotFound(f"no checkpoint covers copy {copy_id} yet: the ledger has not been checkpointed")
    ids, levels = _tree(conn, cp)
    target = uuid.UUID(str(copy_id))
    index = bisect.bisect_left(ids, target)
    if index >= len(ids) or ids[index] != target:
        raise NotFound(f"copy {copy_id} has no entry in checkpoint {cp.checkpoint_id} yet")
    row = conn.execute(
        "select head_seq, head_hash from ledger.checkpoint_head where copy_id = %s and checkpoint_id <= %s "
        "order by checkpoint_id desc limit 1",
        (copy_id, cp.checkpoint_id),
    ).fetchone()
    head_seq, head_hash = (row["head_seq"], bytes(row["head_hash"])) if isinstance(row, dict) else (row[0], bytes(row[1]))
    with conn.cursor(row_factory=psycopg.rows.tuple_row) as cur:
        cur.execute("select canonical from ledger.entry where copy_id = %s and seq <= %s order by seq",
                    (copy_id, head_seq))
        entries = [bytes(c).decode("utf-8") for (c,) in cur]
    return {
        "type": PROOF_TYPE,
        "v": canonical.VERSION,
        "copy_id": str(target),
        "head_seq": head_seq,
        "head_hash": head_hash.hex(),
        "leaf_index": index,
        "tree_size": cp.tree_size,
        "inclusion_path": [h.hex() for h in merkle.inclusion_path(levels, index)],
        "checkpoint": cp.document(),
        "entries": entries,
    }


def check_proof(proof: dict, public_keys: list) -> list[str]:
    """Problems with a proof, first the most basic; an empty list means it checks.

    `public_keys` are the Ed25519 public keys the reader trusts (the operator publishes them).
    """
    try:
        cp = checkpoints.parse_document(proof["checkpoint"])
        copy_id = str(uuid.UUID(proof["copy_id"]))
        head_seq = int(proof["head_seq"])
        head_hash = bytes.fromhex(proof["head_hash"])
        index = int(proof["leaf_index"])
        path = [bytes.fromhex(h) for h in proof["inclusion_path"]]
        entries = [e.encode("utf-8") for e in proof.get("entries", [])]
    except (KeyError, TypeError, ValueError) as exc:
        return [f"not a covr inclusion proof: {type(exc).__name__}: {exc}"]
    keys = {checkpoints.key_id(k): k for k in public_keys}
    key = keys.get(cp.key_id)
    if key is None:
        return [f"bad signature: checkpoint {cp.checkpoint_id} is signed with key {cp.key_id}, which is not "
                f"among the trusted keys ({', '.join(sorted(keys)) or 'none given'})"]
    try:
        key.verify(cp.signature, canonical.checkpoint_message(cp.body))
    except InvalidSignature:
        return [f"bad signature: checkpoint {cp.checkpoint_id}'s signature does not match its body"]
    if int(proof["tree_size"]) != cp.tree_size:
        return [f"checkpoint mismatch: the proof says {proof['tree_size']} leaves, the signed body {cp.tree_size}"]
    leaf = merkle.leaf_hash(merkle.leaf_data(copy_id, head_seq, head_hash))
    if not merkle.verify_inclusion(leaf, index, cp.tree_size, path, cp.root_hash):
        return [f"checkpoint mismatch: copy {copy_id} head {head_seq} is not in checkpoint {cp.checkpoint_id}'s "
                "signed tree (the inclusion path does not lead to its root)"]
    problems = []
    prev = canonical.GENESIS_HASH
    for seq, data in enumerate(entries, start=1):
        digest = hashlib.sha256(canonical.ENTRY_TAG + data).digest()
        try:
            obj = json.loads(data)
        except ValueError:
            return [f"copy {copy_id} entry {seq}: hash mismatch: its bytes are not JSON"]
        if obj.get("copy_id") != copy_id or obj.get("seq") != seq:
            return [f"copy {copy_id} entry {seq}: missing entry: the proof's entry {seq} is "
                    f"copy {obj.get('copy_id')} seq {obj.get('seq')}"]
        if obj.get("prev_hash") != prev.hex():
            return [f"copy {copy_id} entry {seq}: broken link: prev_hash is not entry {seq - 1}'s hash"]
        prev = digest
    if entries and (len(entries) != head_seq or prev != head_hash):
        problems.append(f"copy {copy_id} entry {len(entries)}: checkpoint mismatch: the entries end at "
                        f"{len(entries)} with hash {prev.hex()[:16]}…, the signed head is {head_seq} "
                        f"{head_hash.hex()[:16]}…")
    return problems
