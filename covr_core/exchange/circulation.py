"""A copy leaving circulation: withdrawn by its owner, or lost; catalog's change and its ledger entry in one step.

Catalog (catalog.copies.withdraw_copy / mark_copy_lost) decides who may do it and from which status, and writes
the copy. It sits below the ledger in the import-linter layers, so it cannot append the ledger entry itself;
these functions, in the layer above both, run catalog's change and then the ledger hook in one transaction
(a refusal raises before anything is appended). Routes and other callers use these, not catalog's directly,
or the copy's history would miss the step.
"""

from __future__ import annotations

import psycopg

from covr_core.catalog import copies, custody
from covr_core.catalog.copies import ThumbnailUrl
from covr_core.ledger import hooks


def withdraw(conn: psycopg.Connection, *, user_id: str, copy_id: str,
             thumbnail_url: ThumbnailUrl | None = None) -> dict:
    """The owner takes the copy out of circulation for good (catalog.copies.withdraw_copy); the ledger records it."""
    with conn.transaction():
        before = custody.lock(conn, copy_id)
        copy = copies.withdraw_copy(conn, user_id=user_id, copy_id=copy_id, thumbnail_url=thumbnail_url)
        hooks.on_copy_withdrawn(conn, copy_id=copy["copy_id"], owner_id=user_id, status_before=before.status)
        return copy


def mark_lost(conn: psycopg.Connection, *, user_id: str, copy_id: str,
              thumbnail_url: ThumbnailUrl | None = None) -> dict:
    """The owner or the holder reports the copy lost (catalog.copies.mark_copy_lost); the ledger records it."""
    with conn.transaction():
        before = custody.lock(conn, copy_id)
        copy = copies.mark_copy_lost(conn, user_id=user_id, copy_id=copy_id, thumbnail_url=thumbnail_url)
        hooks.on_copy_lost(conn, copy_id=copy["copy_id"], reported_by=user_id, owner_id=before.owner_id,
                           holder_id=before.holder_id, status_before=before.status)
        return copy
