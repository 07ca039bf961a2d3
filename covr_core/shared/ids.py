"""Identifiers as they arrive from outside (object keys, command lines): checked before they reach a uuid column."""

from __future__ import annotations

import uuid


def is_uuid(value: object) -> bool:
    """Whether `value` is text Postgres would accept as a uuid; False for anything else, never an exception."""
    if not isinstance(value, str):
        return False
    try:
        uuid.UUID(value.strip())
    except ValueError:
        return False
    return True
