"""The bytes a ledger entry's hash covers: RFC 8785 JSON of one framed object behind a domain tag.

What the seed got wrong, and what this module does instead:
- a timestamp is hashed as the integer UTC epoch-microseconds of the value stored, never as `isoformat()`
  (which changes with the session's TimeZone and drops the digits of a microsecond value of 0);
- the payload is hashed as RFC 8785 canonical JSON over I-JSON (integers within 2**53, no floats, no NaN,
  no U+0000, no lone surrogates), and those exact bytes are stored, because JSONB re-serialises;
- every field sits in one object `{v, copy_id, seq, prev_hash, ts_us, entry_type, from_user_id, to_user_id,
  refs, payload}` behind a domain-separation tag, so no two field sets share bytes and no other covr hash
  (a checkpoint, a Merkle node) can be mistaken for an entry's.
"""

from __future__ import annotations

import hashlib
import math
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

import rfc8785

from covr_core.shared.errors import InvalidInput

VERSION = 1
ENTRY_TAG = b"covr.ledger.entry.v1\x00"
CHECKPOINT_TAG = b"covr.ledger.checkpoint.v1\x00"
# The explicit predecessor of every chain's first entry (never NULL).
GENESIS_HASH = bytes(32)

ENTRY_TYPES = (
    "copy_created",
    "request_created",
    "request_accepted",
    "request_declined",
    "request_cancelled",
    "handover_completed",
    "exchange_confirmed",
    "copy_withdrawn",
    "copy_lost",
)

MAX_SAFE_INTEGER = 2**53 - 1
MAX_DEPTH = 16
MAX_CANONICAL_BYTES = 65536
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MICROSECOND = timedelta(microseconds=1)


class NotIJson(InvalidInput):
    """A ledger payload or refs value that is not I-JSON; the detail names the path and the value."""

    code = "invalid_ledger_payload"


def epoch_us(value: datetime) -> int:
    """Integer UTC epoch-microseconds of an aware timestamp: exact, and the same in every session TimeZone."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"timestamp {value!r} has no time zone; the ledger hashes aware UTC instants only")
    return (value - _EPOCH) // _MICROSECOND


def from_epoch_us(ts_us: int) -> datetime:
    return _EPOCH + timedelta(microseconds=ts_us)


def check_ijson(value: Any, path: str = "payload", depth: int = 0) -> None:
    """Raise NotIJson naming the first value at `path` that RFC 7493 (I-JSON) or covr's integer rule refuses."""
    if depth > MAX_DEPTH:
        raise NotIJson(f"{path} nests deeper than {MAX_DEPTH} levels")
    if value is None or isinstance(value, bool):
        return
    if isinstance(value, int):
        if abs(value) > MAX_SAFE_INTEGER:
            raise NotIJson(f"{path} is {value}, outside the I-JSON integer range ±(2**53-1); store it as a string")
        return
    if isinstance(value, float):
        what = "NaN" if math.isnan(value) else "infinite" if math.isinf(value) else f"the float {value!r}"
        raise NotIJson(f"{path} is {what}; ledger payloads take integers only (scale it, or store a string)")
    if isinstance(value, str):
        _check_string(value, path)
        return
    if isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            check_ijson(item, f"{path}[{i}]", depth + 1)
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise NotIJson(f"{path} has the key {key!r}, which is not a string")
            _check_string(key, f"{path} key {key!r}")
            check_ijson(item, f"{path}.{key}", depth + 1)
        return
    raise NotIJson(f"{path} is a {type(value).__name__}, which JSON cannot hold")


def _check_string(value: str, path: str) -> None:
    if "\x00" in value:
        raise NotIJson(f"{path} contains U+0000, which I-JSON (and Postgres JSONB) refuse")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise NotIJson(f"{path} contains a lone surrogate at offset {exc.start}") from None


def _uuid_text(value: Any, what: str) -> str:
    try:
        return str(uuid.UUID(str(value)))
    except ValueError:
        raise InvalidInput(f"{what} {value!r} is not a uuid") from None


def framed(
    *,
    copy_id: Any,
    seq: int,
    prev_hash: bytes,
    ts_us: int,
    entry_type: str,
    from_user_id: Any,
    to_user_id: Any,
    refs: dict,
    payload: dict,
) -> dict:
    """The one object an entry's hash covers; every field always present (null, never absent)."""
    if entry_type not in ENTRY_TYPES:
        raise InvalidInput(f"ledger entry type {entry_type!r} is not one of {', '.join(ENTRY_TYPES)}")
    if not isinstance(refs, dict) or not isinstance(payload, dict):
        raise NotIJson("refs and payload must be JSON objects")
    check_ijson(refs, "refs")
    check_ijson(payload, "payload")
    return {
        "v": VERSION,
        "copy_id": _uuid_text(copy_id, "copy_id"),
        "seq": int(seq),
        "prev_hash": bytes(prev_hash).hex(),
        "ts_us": int(ts_us),
        "entry_type": entry_type,
        "from_user_id": None if from_user_id is None else _uuid_text(from_user_id, "from_user_id"),
        "to_user_id": None if to_user_id is None else _uuid_text(to_user_id, "to_user_id"),
        "refs": refs,
        "payload": payload,
    }


def canonical_bytes(obj: dict) -> bytes:
    """RFC 8785 bytes of an object that already passed check_ijson."""
    data = rfc8785.dumps(obj)
    if len(data) > MAX_CANONICAL_BYTES:
        raise NotIJson(f"ledger entry is {len(data)} bytes canonicalised, over the {MAX_CANONICAL_BYTES} limit")
    return data


def entry_hash(canonical: bytes) -> bytes:
    return hashlib.sha256(ENTRY_TAG + canonical).digest()


def checkpoint_message(body: bytes) -> bytes:
    """What an Ed25519 checkpoint signature covers."""
    return CHECKPOINT_TAG + body
