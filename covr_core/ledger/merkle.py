"""RFC 9162 Merkle trees (0x00 leaf, 0x01 node prefixes): roots, inclusion proofs and their verification."""

from __future__ import annotations

import hashlib
import struct
import uuid
from collections.abc import Sequence

_sha256 = hashlib.sha256
EMPTY_ROOT = _sha256(b"").digest()


def leaf_data(copy_id, head_seq: int, head_hash: bytes) -> bytes:
    """One checkpoint leaf: the copy's 16 uuid bytes, its head seq (8 bytes big-endian), its head hash."""
    raw = copy_id.bytes if isinstance(copy_id, uuid.UUID) else uuid.UUID(str(copy_id)).bytes
    return raw + struct.pack(">Q", head_seq) + bytes(head_hash)


def leaf_hash(data: bytes) -> bytes:
    return _sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return _sha256(b"\x01" + left + right).digest()


def levels(leaf_hashes: Sequence[bytes]) -> list[list[bytes]]:
    """Every level bottom-up. Carrying an odd last node up unchanged gives RFC 9162's tree (split at the
    largest power of two below n) level by level."""
    level = list(leaf_hashes)
    out = [level]
    while len(level) > 1:
        nxt = [_sha256(b"\x01" + level[i] + level[i + 1]).digest() for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])
        out.append(nxt)
        level = nxt
    return out


def root(leaf_hashes: Sequence[bytes]) -> bytes:
    if not leaf_hashes:
        return EMPTY_ROOT
    return levels(leaf_hashes)[-1][0]


def inclusion_path(tree: list[list[bytes]], index: int) -> list[bytes]:
    """RFC 9162 PATH(index, D[n]) from precomputed levels."""
    if not 0 <= index < len(tree[0]):
        raise IndexError(f"leaf {index} is outside a tree of {len(tree[0])} leaves")
    path = []
    for level in tree[:-1]:
        sibling = index ^ 1
        if sibling < len(level):
            path.append(level[sibling])
        index //= 2
    return path


def verify_inclusion(leaf: bytes, index: int, tree_size: int, path: Sequence[bytes], root_hash: bytes) -> bool:
    """RFC 9162 section 2.1.3.2, verbatim: does `path` prove leaf hash `leaf` at `index` under `root_hash`?"""
    if not 0 <= index < tree_size:
        return False
    fn, sn, r = index, tree_size - 1, leaf
    for p in path:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root_hash
