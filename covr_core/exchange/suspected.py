"""Suspected exchanges: ingest saw a member photograph a copy someone else holds. Either side confirms or dismisses.

Confirming makes it a completed hand-over from the holder to the uploader, at once: the uploader's photo is the
evidence that the copy arrived, so there is nothing left to wait for. Which hand-over:
- the copy already has a hand-over in progress to the uploader (their request was accepted): that one completes,
  with its request's kind;
- otherwise a new one. Kind `keep` when the holder owns the copy (a book passed on for good is the usual story
  behind such a photo); `return` when the uploader is the owner of a copy on loan (it came back); otherwise
  `borrow`: the holder is itself a borrower, who cannot give away what is not theirs, so the copy stays on loan
  from its owner, now in the uploader's hands.
Only the uploader, who has the copy, may rate its condition when confirming; the holder confirms without one.
"""

from __future__ import annotations

import psycopg

from covr_core.catalog import custody
from covr_core.exchange import handovers
from covr_core.exchange import _repository as repo
from covr_core.exchange._repository import Suspected
from covr_core.ledger import hooks
from covr_core.shared.errors import InvalidInput, InvalidTransition, NotFound
from covr_core.shared.events import ExchangeSuspected, SuspectedExchangeDismissed
from covr_core.shared.outbox import append_event


def suspect(conn: psycopg.Connection, image_id: str, copy_id: str, uploader_id: str, holder_id: str) -> str | None:
    """Record that `image_id` suggests `copy_id` went from `holder_id` to `uploader_id`, with ExchangeSuspected.

    Runs in the caller's transaction (dedup's, which holds its uploader lock). Returns the new suspicion's id,
    or None when this image already raised one: a re-run announces nothing twice.
    """
    with conn.transaction():
        suspected_id = repo.insert_suspected(conn, image_id=image_id, copy_id=copy_id, uploader_id=uploader_id,
                                             holder_id=holder_id)
        if suspected_id is not None:
            append_event(conn, ExchangeSuspected(suspected_exchange_id=suspected_id, image_id=image_id,
                                                 copy_id=copy_id, uploader_id=uploader_id, holder_id=holder_id))
    return suspected_id


def get(conn: psycopg.Connection, *, user_id: str, suspected_exchange_id: str) -> Suspected:
    suspected = repo.get_suspected(conn, suspected_exchange_id)
    if suspected is None or not suspected.party(user_id):
        raise NotFound(f"suspected exchange {suspected_exchange_id} not found")
    return suspected


def list_for(conn: psycopg.Connection, *, user_id: str, status: str | None = None, limit: int = 50,
             offset: int = 0) -> tuple[list[Suspected], int]:
    return repo.list_suspected(conn, user_id=user_id, status=status, limit=limit, offset=offset)


def confirm(conn: psycopg.Connection, *, user_id: str, suspected_exchange_id: str,
            condition_rating: int | None = None, note: str | None = None) -> Suspected:
    """Either side says yes: the copy is handed over to the uploader, completed in this transaction."""
    handovers.check_rating(condition_rating)
    with conn.transaction():
        suspected, copy = _lock(conn, user_id, suspected_exchange_id)
        _require_pending(suspected, "confirmed")
        if condition_rating is not None and user_id != suspected.uploader_id:
            raise InvalidInput(f"only the uploader, who has copy {suspected.copy_id}, rates its condition; "
                               f"confirm suspected exchange {suspected_exchange_id} without a rating",
                               field="condition_rating")
        if copy.holder_id != suspected.holder_id:
            raise InvalidTransition(f"copy {copy.copy_id} has changed hands since suspected exchange "
                                    f"{suspected_exchange_id} was raised; dismiss it")
        in_progress = repo.handover_in_progress(conn, copy.copy_id)
        if in_progress is not None:
            if in_progress.to_user_id != suspected.uploader_id:
                raise InvalidTransition(f"copy {copy.copy_id} is being handed over to someone else; "
                                        f"suspected exchange {suspected_exchange_id} cannot be confirmed")
            handovers.require_copy_in_handover(in_progress, copy)
            handover = in_progress
        elif copy.status in ("available", "on_loan"):
            kind = ("keep" if copy.owner_id == copy.holder_id
                    else "return" if copy.owner_id == suspected.uploader_id else "borrow")
            handover_id = repo.insert_handover(conn, copy_id=copy.copy_id, kind=kind,
                                               origin="return" if kind == "return" else "suspected",
                                               from_user_id=copy.holder_id, to_user_id=suspected.uploader_id)
            handover = repo.get_handover(conn, handover_id, lock=True)
        else:
            raise InvalidTransition(f"copy {copy.copy_id} is {copy.status}; suspected exchange "
                                    f"{suspected_exchange_id} cannot be confirmed")
        # The ledger: the confirmed suspicion with its photo, then the hand-over it completes.
        hooks.on_suspected_exchange_confirmed(
            conn, suspected_exchange_id=suspected_exchange_id, copy_id=copy.copy_id, image_id=suspected.image_id,
            uploader_id=suspected.uploader_id, holder_id=suspected.holder_id, confirmed_by=user_id,
            exchange_id=handover.handover_id)
        handovers.finish(conn, handover, copy, rated_by=user_id if condition_rating is not None else None,
                         condition_rating=condition_rating, note=note, suspected_exchange_id=suspected_exchange_id,
                         confirmed_by=user_id, image_id=suspected.image_id)
        repo.decide_suspected(conn, suspected_exchange_id, status="confirmed", decided_by=user_id,
                              handover_id=handover.handover_id)
        return repo.get_suspected(conn, suspected_exchange_id)


def dismiss(conn: psycopg.Connection, *, user_id: str, suspected_exchange_id: str) -> Suspected:
    """Either side says no: nothing changed hands."""
    with conn.transaction():
        suspected, _ = _lock(conn, user_id, suspected_exchange_id)
        _require_pending(suspected, "dismissed")
        repo.decide_suspected(conn, suspected_exchange_id, status="dismissed", decided_by=user_id)
        append_event(conn, SuspectedExchangeDismissed(
            suspected_exchange_id=suspected_exchange_id, copy_id=suspected.copy_id,
            uploader_id=suspected.uploader_id, holder_id=suspected.holder_id, dismissed_by=user_id,
        ))
        return repo.get_suspected(conn, suspected_exchange_id)


def _lock(conn: psycopg.Connection, user_id: str, suspected_exchange_id: str):
    copy_id = repo.suspected_copy_id(conn, suspected_exchange_id)
    copy = custody.lock(conn, copy_id) if copy_id else None
    suspected = repo.get_suspected(conn, suspected_exchange_id, lock=True) if copy else None
    if suspected is None or not suspected.party(user_id):
        raise NotFound(f"suspected exchange {suspected_exchange_id} not found")
    return suspected, copy


def _require_pending(suspected: Suspected, step: str) -> None:
    if suspected.status != "pending":
        raise InvalidTransition(f"suspected exchange {suspected.suspected_exchange_id} is {suspected.status}; "
                                f"only a pending one can be {step}")
