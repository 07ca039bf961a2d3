"""Signed checkpoints: an RFC 9162 Merkle root over every chain's head, signed with the operator's Ed25519 key."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import psycopg
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from covr_core.ledger import canonical, merkle

GENESIS_CHECKPOINT_HASH = bytes(32)
OBJECT_PREFIX = "ledger/checkpoints/"
# Serialises checkpoint writers (one advisory key for the ledger's checkpoints).
_ADVISORY_KEY = 0x6C656467  # "ledg"


class SigningKeyMissing(RuntimeError):
    """No Ed25519 key is configured; the message says how to make one."""


class CheckpointConflict(RuntimeError):
    """Another checkpoint was written at the same moment."""


@dataclass(frozen=True)
class Checkpoint:
    checkpoint_id: int
    tree_size: int
    root_hash: bytes
    prev_checkpoint_hash: bytes
    issued_at_us: int
    key_id: str
    body: bytes
    signature: bytes
    object_key: str

    @property
    def body_hash(self) -> bytes:
        return body_hash(self.body)

    def document(self) -> dict:
        """The exported JSON: the exact signed body (as text) and its signature; all a third party needs
        besides the public key."""
        return {
            "type": "covr.ledger.checkpoint",
            "checkpoint_id": self.checkpoint_id,
            "key_id": self.key_id,
            "body": self.body.decode("utf-8"),
            "signature": self.signature.hex(),
        }

    def document_bytes(self) -> bytes:
        return json.dumps(self.document(), indent=2, sort_keys=True).encode() + b"\n"


def body_hash(body: bytes) -> bytes:
    return hashlib.sha256(canonical.CHECKPOINT_TAG + body).digest()


def object_key(checkpoint_id: int) -> str:
    return f"{OBJECT_PREFIX}{checkpoint_id:012d}.json"


# Keys --------------------------------------------------------------------------------------------------------

def generate_private_key_pem() -> bytes:
    return Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def load_private_key(pem: bytes | str) -> Ed25519PrivateKey:
    data = pem.encode() if isinstance(pem, str) else pem
    key = serialization.load_pem_private_key(data, password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"the ledger signing key is a {type(key).__name__}, not an Ed25519 private key")
    return key


def public_raw(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def public_hex(key: Ed25519PrivateKey | Ed25519PublicKey) -> str:
    pub = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    return public_raw(pub).hex()


def key_id(key: Ed25519PrivateKey | Ed25519PublicKey) -> str:
    """The first 8 bytes of sha256 of the raw public key, in hex: names a key without revealing anything."""
    return hashlib.sha256(bytes.fromhex(public_hex(key))).hexdigest()[:16]


def parse_public_key(text: str) -> Ed25519PublicKey:
    """A public key as 64 hex digits (raw), or PEM."""
    text = text.strip()
    if text.startswith("-----BEGIN"):
        key = serialization.load_pem_public_key(text.encode())
        if not isinstance(key, Ed25519PublicKey):
            raise ValueError("the public key is not an Ed25519 key")
        return key
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        raise ValueError(f"public key {text[:20]!r}... is neither 64 hex digits nor PEM") from None
    if len(raw) != 32:
        raise ValueError(f"an Ed25519 public key is 32 bytes, not {len(raw)}")
    return Ed25519PublicKey.from_public_bytes(raw)


def default_key_file(settings) -> Path:
    return settings.ledger_signing_key_file or settings.home / "ledger" / "signing-key.pem"


def signing_key(settings) -> Ed25519PrivateKey:
    """The configured key: COVR_LEDGER_SIGNING_KEY (PEM text), else the PEM file it names or the default one."""
    if settings.ledger_signing_key is not None:
        return load_private_key(settings.ledger_signing_key.get_secret_value())
    path = default_key_file(settings)
    if not path.exists():
        raise SigningKeyMissing(
            f"no ledger signing key: {path} does not exist; run `covr ledger keygen` or set COVR_LEDGER_SIGNING_KEY"
        )
    return load_private_key(path.read_bytes())


def trusted_keys(settings) -> dict[str, Ed25519PublicKey]:
    """Public keys a checkpoint may be signed with: the signing key's, and those kept after a rotation."""
    keys: dict[str, Ed25519PublicKey] = {}
    for text in settings.ledger_trusted_keys:
        pub = parse_public_key(text)
        keys[key_id(pub)] = pub
    try:
        pub = signing_key(settings).public_key()
        keys[key_id(pub)] = pub
    except SigningKeyMissing:
        pass
    return keys


def signature_problem(cp: Checkpoint, keys: dict[str, Ed25519PublicKey]) -> str | None:
    """None when the checkpoint's body is signed by a trusted key and agrees with its stored columns."""
    pub = keys.get(cp.key_id)
    if pub is None:
        return f"checkpoint {cp.checkpoint_id} is signed with key {cp.key_id}, which is not trusted here"
    try:
        pub.verify(cp.signature, canonical.checkpoint_message(cp.body))
    except InvalidSignature:
        return f"checkpoint {cp.checkpoint_id}: the signature does not match its body under key {cp.key_id}"
    return body_problem(cp)


def body_problem(cp: Checkpoint) -> str | None:
    try:
        body = json.loads(cp.body)
    except ValueError:
        return f"checkpoint {cp.checkpoint_id}: its body is not JSON"
    expected = _body_object(cp.checkpoint_id, cp.tree_size, cp.root_hash, cp.prev_checkpoint_hash,
                            cp.issued_at_us, cp.key_id)
    if body != expected:
        fields = sorted(k for k in expected if body.get(k) != expected[k])
        return f"checkpoint {cp.checkpoint_id}: stored columns {', '.join(fields)} differ from the signed body"
    return None


def _body_object(checkpoint_id, tree_size, root_hash, prev_hash, issued_at_us, kid) -> dict:
    return {
        "v": canonical.VERSION,
        "type": "covr.ledger.checkpoint",
        "checkpoint_id": checkpoint_id,
        "tree_size": tree_size,
        "root_hash": bytes(root_hash).hex(),
        "prev_checkpoint_hash": bytes(prev_hash).hex(),
        "issued_at_us": issued_at_us,
        "key_id": kid,
    }


def parse_document(doc: dict) -> Checkpoint:
    """A checkpoint from its exported JSON (the signed body is authoritative)."""
    body_bytes = doc["body"].encode("utf-8")
    body = json.loads(body_bytes)
    return Checkpoint(
        checkpoint_id=body["checkpoint_id"],
        tree_size=body["tree_size"],
        root_hash=bytes.fromhex(body["root_hash"]),
        prev_checkpoint_hash=bytes.fromhex(body["prev_checkpoint_hash"]),
        issued_at_us=body["issued_at_us"],
        key_id=body["key_id"],
        body=body_bytes,
        signature=bytes.fromhex(doc["signature"]),
        object_key=object_key(body["checkpoint_id"]),
    )


# Reads and writes --------------------------------------------------------------------------------------------

_COLUMNS = ("checkpoint_id, tree_size, root_hash, prev_checkpoint_hash, issued_at, key_id, body, signature, "
            "object_key")


def _from_row(row) -> Checkpoint:
    r = tuple(row.values()) if isinstance(row, dict) else tuple(row)
    return Checkpoint(r[0], r[1], bytes(r[2]), bytes(r[3]), canonical.epoch_us(r[4]), r[5], bytes(r[6]),
                      bytes(r[7]), r[8])


def latest(conn: psycopg.Connection) -> Checkpoint | None:
    row = conn.execute(f"select {_COLUMNS} from ledger.checkpoint order by checkpoint_id desc limit 1").fetchone()
    return None if row is None else _from_row(row)


def get(conn: psycopg.Connection, checkpoint_id: int) -> Checkpoint | None:
    row = conn.execute(f"select {_COLUMNS} from ledger.checkpoint where checkpoint_id = %s",
                       (checkpoint_id,)).fetchone()
    return None if row is None else _from_row(row)


def all_checkpoints(conn: psycopg.Connection) -> list[Checkpoint]:
    return [_from_row(r) for r in conn.execute(f"select {_COLUMNS} from ledger.checkpoint order by checkpoint_id")]


def leaves(conn: psycopg.Connection, checkpoint_id: int) -> list[tuple]:
    """(copy_id uuid, head_seq, head_hash) of every chain in checkpoint `checkpoint_id`, in copy-id order."""
    with conn.cursor(binary=True, row_factory=psycopg.rows.tuple_row) as cur:
        cur.execute(
            """
            select distinct on (copy_id) copy_id, head_seq, head_hash
            from ledger.checkpoint_head where checkpoint_id <= %s
            order by copy_id, checkpoint_id desc
            """,
            (checkpoint_id,),
        )
        return [(c, s, bytes(h)) for c, s, h in cur]


# For create(): copy ids as text (cheap to key and compare), and each leaf's hash computed by Postgres.
_LEAVES_TEXT = """
    select distinct on (copy_id) copy_id::text, head_seq, head_hash
    from ledger.checkpoint_head where checkpoint_id <= %s
    order by copy_id, checkpoint_id desc
"""
_HEADS_WITH_LEAF_HASHES = """
    select copy_id::text, head_seq, head_hash,
           sha256('\\x00'::bytea || uuid_send(copy_id) || int8send(head_seq) || head_hash)
    from ledger.chain where head_seq > 0 order by copy_id
"""


def tree_of(leaf_rows: list[tuple]) -> list[list[bytes]]:
    return merkle.levels([merkle.leaf_hash(merkle.leaf_data(c, s, h)) for c, s, h in leaf_rows])


def create(conn: psycopg.Connection, key: Ed25519PrivateKey, *, now: datetime | None = None) -> Checkpoint:
    """Write the next checkpoint in a transaction of its own and return it (export it after this commits)."""
    if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
        raise RuntimeError("a checkpoint is written in a transaction of its own; the connection is busy")
    kid = key_id(key)
    try:
        with conn.transaction(), conn.cursor(binary=True, row_factory=psycopg.rows.tuple_row) as cur:
            cur.execute("select pg_advisory_xact_lock(%s)", (_ADVISORY_KEY,))
            # After the lock, so this statement's snapshot sees the checkpoint a waiting-for writer committed.
            cur.execute("select checkpoint_id, body, clock_timestamp() from ledger.checkpoint "
                        "order by checkpoint_id desc limit 1")
            prev = cur.fetchone()
            if prev is None:
                cur.execute("select clock_timestamp()")
                issued = now or cur.fetchone()[0]
                prev_id, prev_hash, previous = 0, GENESIS_CHECKPOINT_HASH, {}
            else:
                prev_id, prev_hash, issued = prev[0], body_hash(bytes(prev[1])), now or prev[2]
                cur.execute(_LEAVES_TEXT, (prev_id,))
                previous = {c: (s, bytes(h)) for c, s, h in cur.fetchall()}
            # One statement: one snapshot of every head, consistent across copies. Postgres hashes each leaf
            # (RFC 9162's 0x00 prefix over merkle.leaf_data's bytes); the tree above them is built here.
            cur.execute(_HEADS_WITH_LEAF_HASHES)
            heads = [(c, s, bytes(h), bytes(leaf)) for c, s, h, leaf in cur.fetchall()]
            _refuse_regressions(prev_id, previous, heads)
            tree = merkle.levels([leaf for _, _, _, leaf in heads])
            root_hash = tree[-1][0] if heads else merkle.EMPTY_ROOT
            checkpoint_id = prev_id + 1
            issued_at_us = canonical.epoch_us(issued)
            body = canonical.canonical_bytes(
                _body_object(checkpoint_id, len(heads), root_hash, prev_hash, issued_at_us, kid))
            signature = key.sign(canonical.checkpoint_message(body))
            cp = Checkpoint(checkpoint_id, len(heads), root_hash, prev_hash, issued_at_us, kid, body, signature,
                            object_key(checkpoint_id))
            cur.execute(
                f"insert into ledger.checkpoint ({_COLUMNS}) values (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
                (checkpoint_id, len(heads), root_hash, prev_hash, canonical.from_epoch_us(issued_at_us), kid,
                 body, signature, cp.object_key),
            )
            # The delta: only the chains whose head moved, as COPY text (bytea as \\x hex).
            delta = "".join(f"{c}\t{checkpoint_id}\t{s}\t\\\\x{h.hex()}\n"
                            for c, s, h, _ in heads if previous.get(c) != (s, h))
            with cur.copy("copy ledger.checkpoint_head (copy_id, checkpoint_id, head_seq, head_hash) from stdin") as cp_in:
                cp_in.write(delta)
    except psycopg.errors.UniqueViolation as exc:
        raise CheckpointConflict(f"another checkpoint was written concurrently: {exc.diag.message_primary}") from None
    return cp


class ChainRegressed(RuntimeError):
    """A head moved backwards or a chain vanished since the last checkpoint: the ledger was tampered with."""


def _refuse_regressions(prev_id: int, previous: dict, heads: list[tuple]) -> None:
    # Signing over a shortened chain would launder the tamper into the next checkpoint.
    current = {row[0]: row[1] for row in heads}
    for c, (s, _) in previous.items():
        if current.get(c, 0) < s:
            raise ChainRegressed(
                f"copy {c}: checkpoint {prev_id} covers entry {s} but the chain's head is now at "
                f"{current.get(c, 0)}; run `covr ledger verify` before writing another checkpoint"
            )


# The object store ---------------------------------------------------------------------------------------------

def export(store, cp: Checkpoint) -> str:
    """Put the checkpoint document where someone without database access keeps a copy; returns its key."""
    store.put(cp.object_key, cp.document_bytes(), content_type="application/json")
    return cp.object_key


def exported_documents(store, *, newest: int = 1) -> list[dict]:
    """The newest exported checkpoint documents (keys sort by checkpoint id), oldest first."""
    keys = sorted(o.key for o in store.list_since(OBJECT_PREFIX, None))
    return [json.loads(store.get(k)) for k in keys[-newest:]] if newest else []
