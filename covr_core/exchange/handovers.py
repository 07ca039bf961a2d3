"""Hand-overs: a copy passing from one member's hands to another's, confirmed by the one who receives it.

A hand-over (a row of exchange.exchange) comes from an accepted request (kind borrow or keep), from a confirmed
suspected exchange, or is a borrowed copy's return to its owner (kind return). It is `in_progress` until the
receiver confirms receipt, or either side cancels it.

**Only the receiver confirms.** The receiver is the one who can say the copy arrived and rate its condition
(0 unusable .. 10 as new), and that confirmation alone completes the hand-over. The giver does not confirm:
a giver's "I handed it over" proves nothing the receiver has not already said, and a second confirmation
would leave a half-done state with nothing to decide in it. A giver whose receiver never confirms cancels.

**Copy status.** While a hand-over is in progress the copy shows `requested` (promised, not available to new
requests). Completion leaves it `on_loan` after a borrow, `available` after a keep (the receiver now owns it)
or a return (back with its owner). Cancelling puts back what it was: `available`, or `on_loan` for a return.

Completion is one transaction (`finish`): the copy's holder (and owner, for keep) and condition grade move via
catalog.custody, the rating is stored, the request (if any) is completed, ExchangeCompleted goes to the outbox
and the ledger hook is called. The database refuses any step these functions would skip.
"""

from __future__ import annotations

import psycopg

from covr_core.catalog import custody
from covr_core.catalog.custody import Custody
from covr_core.exchange import _repository as repo
from covr_core.exchange._repository import Handover, Request
from covr_core.ledger import hooks
from covr_core.ledger.hooks import CompletedHandover, on_handover_completed
from covr_core.shared.errors import InvalidInput, InvalidTransition, NotFound
from covr_core.shared.events import (
    ExchangeAccepted, ExchangeCompleted, RequestCancelled, ReturnCancelled, ReturnStarted,
)
from covr_core.shared.outbox import append_event

MIN_RATING, MAX_RATING = 0, 10
# Where a completed hand-over leaves the copy, by kind.
STATUS_AFTER = {"borrow": "on_loan", "keep": "available", "return": "available"}


def check_rating(rating: int | None) -> None:
    if rating is not None and not (isinstance(rating, int) and MIN_RATING <= rating <= MAX_RATING):
        raise InvalidInput(f"condition rating {rating!r} is outside {MIN_RATING}..{MAX_RATING}",
                           field="condition_rating")


def get(conn: psycopg.Connection, *, user_id: str, handover_id: str) -> Handover:
    """A hand-over the user gives or receives; anyone else gets NotFound, exactly as for a missing one."""
    handover = repo.get_handover(conn, handover_id)
    if handover is None or not handover.party(user_id):
        raise NotFound(f"hand-over {handover_id} not found")
    return handover


def list_for(conn: psycopg.Connection, *, user_id: str, status: str | None = None, copy_id: str | None = None,
             limit: int = 50, offset: int = 0) -> tuple[list[Handover], int]:
    return repo.list_handovers(conn, user_id=user_id, status=status, copy_id=copy_id, limit=limit, offset=offset)


def start_from_request(conn: psycopg.Connection, request: Request, copy: Custody) -> str:
    """The accepted `request` becomes a hand-over in progress; inside the accepting transaction, copy locked."""
    handover_id = repo.insert_handover(conn, copy_id=copy.copy_id, kind=request.kind, origin="request",
                                       from_user_id=request.holder_id, to_user_id=request.requester_id,
                                       request_id=request.request_id)
    custody.set_status(conn, copy.copy_id, "requested", expected="available")
    append_event(conn, ExchangeAccepted(exchange_id=handover_id, request_id=request.request_id,
                                        copy_id=copy.copy_id, from_user_id=request.holder_id,
                                        to_user_id=request.requester_id))
    return handover_id


def start_return(conn: psycopg.Connection, *, user_id: str, copy_id: str) -> Handover:
    """A borrowed copy goes back to its owner: its holder or its owner starts the return, the owner confirms it.

    Anyone else gets NotFound for the copy, as if it did not exist. A copy that is not on loan (held by its
    owner), or whose return is already under way, is an invalid transition.
    """
    with conn.transaction():
        copy = custody.lock(conn, copy_id)
        if copy is None or user_id not in (copy.holder_id, copy.owner_id):
            raise NotFound(f"copy {copy_id} not found")
        if copy.holder_id == copy.owner_id:
            raise InvalidTransition(f"copy {copy_id} is not on loan: its owner holds it, there is nothing to return")
        if copy.status != "on_loan":
            raise InvalidTransition(f"copy {copy_id} is {copy.status}; only a copy on loan can be returned")
        handover_id = repo.insert_handover(conn, copy_id=copy_id, kind="return", origin="return",
                                           from_user_id=copy.holder_id, to_user_id=copy.owner_id)
        custody.set_status(conn, copy_id, "requested", expected="on_loan")
        append_event(conn, ReturnStarted(exchange_id=handover_id, copy_id=copy_id, from_user_id=copy.holder_id,
                                         to_user_id=copy.owner_id, started_by=user_id))
        return repo.get_handover(conn, handover_id)


def complete(conn: psycopg.Connection, *, user_id: str, handover_id: str, condition_rating: int,
             note: str | None = None) -> Handover:
    """The receiver confirms receipt and rates the copy's condition (0..10); the hand-over completes."""
    check_rating(condition_rating)
    if condition_rating is None:
        raise InvalidInput("a condition rating (0..10) is required to confirm receipt", field="condition_rating")
    with conn.transaction():
        handover, copy = _lock(conn, user_id, handover_id)
        if user_id != handover.to_user_id:
            raise InvalidTransition(f"hand-over {handover_id} is confirmed by its receiver, not by its giver")
        _require_in_progress(handover, "completed")
        require_copy_in_handover(handover, copy)
        finish(conn, handover, copy, rated_by=user_id, condition_rating=condition_rating, note=note)
        return repo.get_handover(conn, handover_id)


def cancel(conn: psycopg.Connection, *, user_id: str, handover_id: str) -> Handover:
    """Either side calls off a hand-over in progress; a request's hand-over cancels the request with it."""
    with conn.transaction():
        handover, copy = _lock(conn, user_id, handover_id)
        _require_in_progress(handover, "cancelled")
        if handover.origin == "request":
            cancel_request_handover(conn, repo.get_request(conn, handover.request_id, lock=True), handover, copy,
                                    cancelled_by=user_id)
        else:
            repo.cancel_handover(conn, handover_id, cancelled_by=user_id)
            if copy.status == "requested":  # a copy marked lost meanwhile stays lost
                custody.set_status(conn, copy.copy_id, "on_loan", expected="requested")
            append_event(conn, ReturnCancelled(exchange_id=handover_id, copy_id=copy.copy_id,
                                               from_user_id=handover.from_user_id,
                                               to_user_id=handover.to_user_id, cancelled_by=user_id))
        return repo.get_handover(conn, handover_id)


def cancel_request_handover(conn: psycopg.Connection, request: Request, handover: Handover, copy: Custody, *,
                            cancelled_by: str) -> None:
    """An accepted request and its hand-over called off together; the copy is available again."""
    repo.cancel_handover(conn, handover.handover_id, cancelled_by=cancelled_by)
    repo.set_request_status(conn, request.request_id, "cancelled")
    if copy.status == "requested":  # a copy marked lost meanwhile stays lost
        custody.set_status(conn, request.copy_id, "available", expected="requested")
    append_event(conn, RequestCancelled(request_id=request.request_id, requester_id=request.requester_id,
                                        copy_id=request.copy_id, current_holder_id=request.holder_id,
                                        cancelled_by=cancelled_by, exchange_id=handover.handover_id))
    hooks.on_request_cancelled(conn, request_id=request.request_id, copy_id=request.copy_id,
                               requester_id=request.requester_id, holder_id=request.holder_id,
                               cancelled_by=cancelled_by, was="accepted", exchange_id=handover.handover_id)


def finish(conn: psycopg.Connection, handover: Handover, copy: Custody, *, rated_by: str | None,
           condition_rating: int | None, note: str | None = None, suspected_exchange_id: str | None = None,
           confirmed_by: str | None = None, image_id: str | None = None) -> None:
    """Complete an in-progress hand-over in the caller's transaction, copy locked: the one completion path.

    `confirmed_by` (the receiver unless given) and the photo `image_id` that showed it arrived go to the ledger.
    """
    moved = custody.hand_over(
        conn, copy.copy_id, from_user_id=handover.from_user_id, to_user_id=handover.to_user_id,
        transfer_ownership=handover.kind == "keep", status=STATUS_AFTER[handover.kind],
        condition_grade=condition_rating,
    )
    if condition_rating is not None:
        repo.insert_rating(conn, handover_id=handover.handover_id, copy_id=copy.copy_id, rated_by=rated_by,
                           rating=condition_rating, note=note)
    completed_at = repo.complete_handover(conn, handover.handover_id)
    if handover.request_id is not None:
        repo.set_request_status(conn, handover.request_id, "completed")
    append_event(conn, ExchangeCompleted(exchange_id=handover.handover_id, copy_id=copy.copy_id,
                                         from_user_id=handover.from_user_id, to_user_id=handover.to_user_id,
                                         degradation_rating=condition_rating))
    on_handover_completed(conn, CompletedHandover(
        exchange_id=handover.handover_id, copy_id=copy.copy_id, kind=handover.kind, origin=handover.origin,
        from_user_id=handover.from_user_id, to_user_id=handover.to_user_id, owner_id=moved.owner_id,
        condition_rating=condition_rating, completed_at=completed_at, request_id=handover.request_id,
        suspected_exchange_id=suspected_exchange_id or handover.suspected_exchange_id,
        confirmed_by=confirmed_by or handover.to_user_id, image_id=image_id,
    ))


def require_copy_in_handover(handover: Handover, copy: Custody) -> None:
    """A copy marked lost while promised cannot arrive: the hand-over can only be cancelled."""
    if copy.status != "requested":
        raise InvalidTransition(f"copy {copy.copy_id} is {copy.status}; hand-over {handover.handover_id} cannot be "
                                f"completed, only cancelled")


def _lock(conn: psycopg.Connection, user_id: str, handover_id: str) -> tuple[Handover, Custody]:
    """Lock the copy, then the hand-over; NotFound unless the user gives or receives it."""
    copy_id = repo.handover_copy_id(conn, handover_id)
    copy = custody.lock(conn, copy_id) if copy_id else None
    handover = repo.get_handover(conn, handover_id, lock=True) if copy else None
    if handover is None or not handover.party(user_id):
        raise NotFound(f"hand-over {handover_id} not found")
    return handover, copy


def _require_in_progress(handover: Handover, step: str) -> None:
    if handover.status != "in_progress":
        raise InvalidTransition(
            f"hand-over {handover.handover_id} is {handover.status}; only one in progress can be {step}"
        )
