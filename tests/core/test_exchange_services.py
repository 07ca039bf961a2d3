"""Requests, hand-overs, returns and suspected exchanges through the exchange services, on real Postgres."""

from __future__ import annotations

import threading

import psycopg
import pytest
from psycopg.rows import dict_row

from covr_core.exchange import circulation, handovers, requests, suspected
from covr_core.shared.errors import Conflict, InvalidInput, InvalidTransition, NotFound
from covr_core.shared.events import EVENT_TYPES

MISSING = "00000000-0000-4000-8000-000000000000"


@pytest.fixture
def db(db_url):
    """An autocommit connection, as the API's pool hands out: each service call is its own transaction."""
    with psycopg.connect(db_url, autocommit=True, row_factory=dict_row) as connection:
        yield connection


class World:
    def __init__(self, db):
        self.db = db

    def user(self, handle):
        return str(self.db.execute("insert into contact.user (handle, display_name) values (%s, %s) "
                                   "returning user_id", (handle, handle.title())).fetchone()["user_id"])

    def befriend(self, a, b):
        self.db.execute("insert into contact.link (user_id, contact_id, status) values (%s, %s, 'accepted')", (a, b))

    def copy(self, holder, grade=8):
        book = self.db.execute("insert into catalog.book (title) values ('Physics') returning book_id").fetchone()
        return str(self.db.execute(
            "insert into catalog.copy (book_id, owner_id, current_holder_id, condition_grade) "
            "values (%s, %s, %s, %s) returning copy_id", (book["book_id"], holder, holder, grade),
        ).fetchone()["copy_id"])

    def copy_row(self, copy_id):
        return self.db.execute("select owner_id::text, current_holder_id::text as holder_id, status, condition_grade "
                               "from catalog.copy where copy_id = %s", (copy_id,)).fetchone()

    def events(self, type_=None):
        rows = self.db.execute("select type, payload from outbox.event where %s::text is null or type = %s "
                               "order by event_id", (type_, type_)).fetchall()
        for r in rows:
            EVENT_TYPES[r["type"]].model_validate(r["payload"])  # every stored event fits its contract
        return [r["payload"] for r in rows]

    def image(self, uploader):
        return str(self.db.execute(
            "insert into media.image (object_key, uploader_id, status, byte_size, sha256, phash, format) "
            "values (%s, %s, 'accepted', 10, repeat('b', 64), 7, 'jpeg') returning image_id",
            (f"uploads/{uploader}/{threading.get_ident()}-{id(object())}.jpg", uploader),
        ).fetchone()["image_id"])


@pytest.fixture
def w(db):
    world = World(db)
    world.alice, world.bob, world.carol, world.mallory = (world.user(h) for h in ("alice", "bob", "carol", "mallory"))
    world.befriend(world.alice, world.bob)
    world.befriend(world.carol, world.alice)
    world.book_copy = world.copy(world.alice)
    return world


def test_a_borrow_from_request_to_completed_hand_over(db, w):
    request = requests.create(db, requester_id=w.bob, copy_id=w.book_copy, kind="borrow")
    assert (request.status, request.holder_id, request.kind) == ("pending", w.alice, "borrow")
    [created] = w.events("RequestCreated")
    assert created | {"timestamp": None} == {
        "event": "RequestCreated", "request_id": request.request_id, "requester_id": w.bob,
        "copy_id": w.book_copy, "current_holder_id": w.alice, "timestamp": None}

    accepted = requests.accept(db, user_id=w.alice, request_id=request.request_id)
    assert accepted.status == "accepted" and accepted.handover_id
    assert w.copy_row(w.book_copy)["status"] == "requested"
    [announced] = w.events("ExchangeAccepted")
    assert (announced["exchange_id"], announced["from_user_id"], announced["to_user_id"]) == (
        accepted.handover_id, w.alice, w.bob)

    done = handovers.complete(db, user_id=w.bob, handover_id=accepted.handover_id, condition_rating=0)
    assert (done.status, done.condition_rating, done.kind) == ("completed", 0, "borrow")
    assert w.copy_row(w.book_copy) == {"owner_id": w.alice, "holder_id": w.bob, "status": "on_loan",
                                       "condition_grade": 0}
    assert requests.get(db, user_id=w.bob, request_id=request.request_id).status == "completed"
    [completed] = w.events("ExchangeCompleted")
    assert (completed["exchange_id"], completed["degradation_rating"]) == (done.handover_id, 0)


def test_keep_moves_ownership_and_leaves_the_copy_available(db, w):
    request = requests.create(db, requester_id=w.bob, copy_id=w.book_copy, kind="keep")
    handover_id = requests.accept(db, user_id=w.alice, request_id=request.request_id).handover_id
    handovers.complete(db, user_id=w.bob, handover_id=handover_id, condition_rating=7)
    assert w.copy_row(w.book_copy) == {"owner_id": w.bob, "holder_id": w.bob, "status": "available",
                                       "condition_grade": 7}


def test_accepting_one_request_declines_the_others_each_with_its_event(db, w):
    w.befriend(w.mallory, w.alice)
    bobs = requests.create(db, requester_id=w.bob, copy_id=w.book_copy)
    carols = requests.create(db, requester_id=w.carol, copy_id=w.book_copy)
    mallorys = requests.create(db, requester_id=w.mallory, copy_id=w.book_copy, kind="keep")
    requests.accept(db, user_id=w.alice, request_id=carols.request_id)

    assert [requests.get(db, user_id=w.alice, request_id=r.request_id).status
            for r in (bobs, carols, mallorys)] == ["declined", "accepted", "declined"]
    declined = w.events("RequestDeclined")
    assert sorted(e["requester_id"] for e in declined) == sorted([w.bob, w.mallory])
    assert {e["accepted_request_id"] for e in declined} == {carols.request_id}
    with pytest.raises(InvalidTransition, match="is requested, not available"):
        requests.create(db, requester_id=w.bob, copy_id=w.book_copy)


def test_a_copy_you_cannot_see_answers_like_one_that_does_not_exist(db, w):
    with pytest.raises(NotFound) as invisible:
        requests.create(db, requester_id=w.mallory, copy_id=w.book_copy)
    with pytest.raises(NotFound) as missing:
        requests.create(db, requester_id=w.mallory, copy_id=MISSING)
    assert str(invisible.value).replace(w.book_copy, "X") == str(missing.value).replace(MISSING, "X")
    with pytest.raises(NotFound):
        requests.create(db, requester_id=w.mallory, copy_id="not-a-uuid")


def test_requests_refused_for_bad_data_or_state(db, w):
    with pytest.raises(InvalidInput, match="you hold copy"):
        requests.create(db, requester_id=w.alice, copy_id=w.book_copy)
    with pytest.raises(InvalidInput, match="kind 'swap'"):
        requests.create(db, requester_id=w.bob, copy_id=w.book_copy, kind="swap")
    first = requests.create(db, requester_id=w.bob, copy_id=w.book_copy)
    with pytest.raises(Conflict, match=first.request_id):
        requests.create(db, requester_id=w.bob, copy_id=w.book_copy)
    db.execute("update catalog.copy set status = 'unavailable' where copy_id = %s", (w.book_copy,))
    with pytest.raises(InvalidTransition, match="unavailable"):
        requests.create(db, requester_id=w.carol, copy_id=w.book_copy)
    with pytest.raises(InvalidTransition, match="no longer available"):
        requests.accept(db, user_id=w.alice, request_id=first.request_id)


def test_each_side_takes_only_its_own_steps(db, w):
    request = requests.create(db, requester_id=w.bob, copy_id=w.book_copy)
    with pytest.raises(NotFound):
        requests.accept(db, user_id=w.carol, request_id=request.request_id)
    with pytest.raises(NotFound):
        requests.get(db, user_id=w.mallory, request_id=request.request_id)
    with pytest.raises(InvalidTransition, match="accepted by the copy's holder"):
        requests.accept(db, user_id=w.bob, request_id=request.request_id)
    with pytest.raises(InvalidTransition, match="declined by the copy's holder"):
        requests.decline(db, user_id=w.bob, request_id=request.request_id)
    with pytest.raises(InvalidTransition, match="only its requester cancels"):
        requests.cancel(db, user_id=w.alice, request_id=request.request_id)

    declined = requests.decline(db, user_id=w.alice, request_id=request.request_id)
    assert declined.status == "declined"
    for step in (requests.accept, requests.decline):
        with pytest.raises(InvalidTransition, match="is declined; only a pending request"):
            step(db, user_id=w.alice, request_id=request.request_id)
    with pytest.raises(InvalidTransition, match="only an open request"):
        requests.cancel(db, user_id=w.bob, request_id=request.request_id)


def test_cancelling_a_pending_request_and_an_accepted_one(db, w):
    pending = requests.create(db, requester_id=w.bob, copy_id=w.book_copy)
    assert requests.cancel(db, user_id=w.bob, request_id=pending.request_id).status == "cancelled"
    again = requests.create(db, requester_id=w.bob, copy_id=w.book_copy)  # a closed request does not block a new one
    handover_id = requests.accept(db, user_id=w.alice, request_id=again.request_id).handover_id

    # Once accepted, either side calls the hand-over off; the copy is available again.
    handover = handovers.cancel(db, user_id=w.alice, handover_id=handover_id)
    assert (handover.status, handover.cancelled_by) == ("cancelled", w.alice)
    assert requests.get(db, user_id=w.bob, request_id=again.request_id).status == "cancelled"
    assert w.copy_row(w.book_copy)["status"] == "available"
    cancelled = w.events("RequestCancelled")
    assert [(e["cancelled_by"], e["exchange_id"]) for e in cancelled] == [(w.bob, None), (w.alice, handover_id)]
    with pytest.raises(InvalidTransition, match="is cancelled; only one in progress"):
        handovers.complete(db, user_id=w.bob, handover_id=handover_id, condition_rating=5)


def test_only_the_receiver_confirms_a_hand_over_with_a_rating_in_range(db, w):
    request = requests.create(db, requester_id=w.bob, copy_id=w.book_copy)
    handover_id = requests.accept(db, user_id=w.alice, request_id=request.request_id).handover_id
    with pytest.raises(InvalidTransition, match="confirmed by its receiver"):
        handovers.complete(db, user_id=w.alice, handover_id=handover_id, condition_rating=5)
    with pytest.raises(NotFound):
        handovers.complete(db, user_id=w.carol, handover_id=handover_id, condition_rating=5)
    for bad in (-1, 11, None):
        with pytest.raises(InvalidInput, match="condition rating"):
            handovers.complete(db, user_id=w.bob, handover_id=handover_id, condition_rating=bad)
    assert handovers.get(db, user_id=w.alice, handover_id=handover_id).status == "in_progress"


def test_a_borrowed_copy_returns_to_its_owner_as_a_hand_over(db, w):
    request = requests.create(db, requester_id=w.bob, copy_id=w.book_copy)
    handover_id = requests.accept(db, user_id=w.alice, request_id=request.request_id).handover_id
    handovers.complete(db, user_id=w.bob, handover_id=handover_id, condition_rating=8)

    with pytest.raises(NotFound):
        handovers.start_return(db, user_id=w.carol, copy_id=w.book_copy)
    started = handovers.start_return(db, user_id=w.bob, copy_id=w.book_copy)
    assert (started.kind, started.from_user_id, started.to_user_id) == ("return", w.bob, w.alice)
    assert w.copy_row(w.book_copy)["status"] == "requested"
    with pytest.raises(InvalidTransition, match="is requested; only a copy on loan"):
        handovers.start_return(db, user_id=w.alice, copy_id=w.book_copy)
    handovers.cancel(db, user_id=w.alice, handover_id=started.handover_id)
    assert w.copy_row(w.book_copy)["status"] == "on_loan"

    again = handovers.start_return(db, user_id=w.alice, copy_id=w.book_copy)  # the owner may ask for it back
    with pytest.raises(InvalidTransition, match="confirmed by its receiver"):
        handovers.complete(db, user_id=w.bob, handover_id=again.handover_id, condition_rating=6)
    handovers.complete(db, user_id=w.alice, handover_id=again.handover_id, condition_rating=6)
    assert w.copy_row(w.book_copy) == {"owner_id": w.alice, "holder_id": w.alice, "status": "available",
                                       "condition_grade": 6}
    with pytest.raises(InvalidTransition, match="not on loan"):
        handovers.start_return(db, user_id=w.alice, copy_id=w.book_copy)
    assert [e["started_by"] for e in w.events("ReturnStarted")] == [w.bob, w.alice]
    assert [e["cancelled_by"] for e in w.events("ReturnCancelled")] == [w.alice]
    assert len(w.events("ExchangeCompleted")) == 2


def test_a_copy_lost_during_its_hand_over_can_only_be_cancelled(db, w):
    request = requests.create(db, requester_id=w.bob, copy_id=w.book_copy)
    handover_id = requests.accept(db, user_id=w.alice, request_id=request.request_id).handover_id
    circulation.mark_lost(db, user_id=w.alice, copy_id=w.book_copy)
    with pytest.raises(InvalidTransition, match="is lost; hand-over .* cannot be completed, only cancelled"):
        handovers.complete(db, user_id=w.bob, handover_id=handover_id, condition_rating=5)
    assert handovers.cancel(db, user_id=w.bob, handover_id=handover_id).status == "cancelled"
    assert w.copy_row(w.book_copy)["status"] == "lost"
    with pytest.raises(NotFound):  # contacts no longer see a lost copy (the copies API's rule)
        requests.create(db, requester_id=w.carol, copy_id=w.book_copy)


def test_completion_is_one_transaction_with_the_ledger_hook(db, w, monkeypatch):
    calls = []

    def hook(conn, handover):
        calls.append(handover)
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS
        raise RuntimeError("ledger refused")

    monkeypatch.setattr(handovers, "on_handover_completed", hook)
    request = requests.create(db, requester_id=w.bob, copy_id=w.book_copy, kind="keep")
    handover_id = requests.accept(db, user_id=w.alice, request_id=request.request_id).handover_id
    before = (w.copy_row(w.book_copy), len(w.events()))
    with pytest.raises(RuntimeError, match="ledger refused"):
        handovers.complete(db, user_id=w.bob, handover_id=handover_id, condition_rating=3)

    [called] = calls
    assert (called.exchange_id, called.kind, called.to_user_id, called.owner_id, called.condition_rating) == (
        handover_id, "keep", w.bob, w.bob, 3)
    # The hook failing rolled everything back: the copy, the rating, the request and the event.
    assert (w.copy_row(w.book_copy), len(w.events())) == before
    assert handovers.get(db, user_id=w.bob, handover_id=handover_id).status == "in_progress"
    assert db.execute("select count(*) as n from exchange.degradation_rating").fetchone()["n"] == 0


def test_a_suspected_exchange_confirmed_by_the_holder_becomes_a_completed_keep(db, w):
    image = w.image(w.bob)
    suspected_id = suspected.suspect(db, image, w.book_copy, w.bob, w.alice)
    assert suspected.suspect(db, image, w.book_copy, w.bob, w.alice) is None  # a re-run announces nothing twice
    assert len(w.events("ExchangeSuspected")) == 1

    listed, count = suspected.list_for(db, user_id=w.alice)
    assert count == 1 and listed[0].suspected_exchange_id == suspected_id
    assert suspected.list_for(db, user_id=w.bob)[1] == 1 and suspected.list_for(db, user_id=w.carol)[1] == 0
    with pytest.raises(NotFound):
        suspected.confirm(db, user_id=w.carol, suspected_exchange_id=suspected_id)
    with pytest.raises(InvalidInput, match="only the uploader"):
        suspected.confirm(db, user_id=w.alice, suspected_exchange_id=suspected_id, condition_rating=5)

    confirmed = suspected.confirm(db, user_id=w.alice, suspected_exchange_id=suspected_id)
    assert (confirmed.status, confirmed.decided_by) == ("confirmed", w.alice)
    handover = handovers.get(db, user_id=w.bob, handover_id=confirmed.handover_id)
    assert (handover.kind, handover.origin, handover.status, handover.suspected_exchange_id) == (
        "keep", "suspected", "completed", suspected_id)
    assert w.copy_row(w.book_copy) == {"owner_id": w.bob, "holder_id": w.bob, "status": "available",
                                       "condition_grade": 8}
    with pytest.raises(InvalidTransition, match="is confirmed; only a pending one"):
        suspected.dismiss(db, user_id=w.bob, suspected_exchange_id=suspected_id)


def test_a_suspected_exchange_completes_the_hand_over_already_in_progress(db, w):
    request = requests.create(db, requester_id=w.bob, copy_id=w.book_copy, kind="borrow")
    handover_id = requests.accept(db, user_id=w.alice, request_id=request.request_id).handover_id
    suspected_id = suspected.suspect(db, w.image(w.bob), w.book_copy, w.bob, w.alice)
    confirmed = suspected.confirm(db, user_id=w.bob, suspected_exchange_id=suspected_id, condition_rating=9)
    assert confirmed.handover_id == handover_id
    assert requests.get(db, user_id=w.bob, request_id=request.request_id).status == "completed"
    assert w.copy_row(w.book_copy) == {"owner_id": w.alice, "holder_id": w.bob, "status": "on_loan",
                                       "condition_grade": 9}


def test_a_suspected_exchange_of_a_lent_copy_is_a_return_or_a_pass_along(db, w):
    request = requests.create(db, requester_id=w.bob, copy_id=w.book_copy)
    handover_id = requests.accept(db, user_id=w.alice, request_id=request.request_id).handover_id
    handovers.complete(db, user_id=w.bob, handover_id=handover_id, condition_rating=8)

    # Bob lent alice's copy on to carol: a borrow from bob, still alice's, still on loan.
    passed = suspected.suspect(db, w.image(w.carol), w.book_copy, w.carol, w.bob)
    along = handovers.get(db, user_id=w.carol,
                          handover_id=suspected.confirm(db, user_id=w.bob, suspected_exchange_id=passed).handover_id)
    assert (along.kind, along.origin, along.from_user_id) == ("borrow", "suspected", w.bob)
    assert w.copy_row(w.book_copy) == {"owner_id": w.alice, "holder_id": w.carol, "status": "on_loan",
                                       "condition_grade": 8}

    # Alice photographs her own copy: it came back to her.
    back = suspected.suspect(db, w.image(w.alice), w.book_copy, w.alice, w.carol)
    returned = handovers.get(db, user_id=w.alice, handover_id=suspected.confirm(
        db, user_id=w.alice, suspected_exchange_id=back, condition_rating=5).handover_id)
    assert (returned.kind, returned.origin, returned.condition_rating) == ("return", "return", 5)
    assert w.copy_row(w.book_copy) == {"owner_id": w.alice, "holder_id": w.alice, "status": "available",
                                       "condition_grade": 5}


def test_a_suspected_exchange_dismissed_changes_no_hands(db, w):
    suspected_id = suspected.suspect(db, w.image(w.bob), w.book_copy, w.bob, w.alice)
    dismissed = suspected.dismiss(db, user_id=w.bob, suspected_exchange_id=suspected_id)
    assert (dismissed.status, dismissed.decided_by, dismissed.handover_id) == ("dismissed", w.bob, None)
    assert w.copy_row(w.book_copy)["holder_id"] == w.alice
    [event] = w.events("SuspectedExchangeDismissed")
    assert event["dismissed_by"] == w.bob


def test_concurrent_accepts_of_two_requests_one_wins(db_url, db, w):
    bobs = requests.create(db, requester_id=w.bob, copy_id=w.book_copy)
    carols = requests.create(db, requester_id=w.carol, copy_id=w.book_copy)
    barrier, results = threading.Barrier(2), {}

    def accept(request_id):
        with psycopg.connect(db_url, autocommit=True, row_factory=dict_row) as own:
            barrier.wait()
            try:
                results[request_id] = requests.accept(own, user_id=w.alice, request_id=request_id).status
            except InvalidTransition as exc:
                results[request_id] = exc

    threads = [threading.Thread(target=accept, args=(r.request_id,)) for r in (bobs, carols)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    outcomes = sorted(results.values(), key=lambda r: isinstance(r, Exception))
    assert outcomes[0] == "accepted" and isinstance(outcomes[1], InvalidTransition)
    assert db.execute("select count(*) as n from exchange.exchange").fetchone()["n"] == 1
