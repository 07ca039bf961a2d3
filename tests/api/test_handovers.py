"""Hand-overs over HTTP: the receiver confirms with a rating, either side cancels, loans come back; refusals inert."""

from __future__ import annotations

import uuid

import pytest

from covr_core.shared.events import EVENT_TYPES

PROBLEM = "https://covr.dev/problems/"


def problem(r, status, code):
    assert r.status_code == status, r.text
    assert r.json()["type"] == PROBLEM + code
    return r.json()


def events(api, type_):
    rows = api.sql("select payload from outbox.event where type = %s order by event_id", (type_,))
    return [EVENT_TYPES[type_].model_validate(r["payload"]).model_dump(mode="json") for r in rows]


def copy_row(api, copy):
    [row] = api.sql("select owner_id::text, current_holder_id::text as holder_id, status, condition_grade "
                    "from catalog.copy where copy_id = %s", (copy,))
    return row


@pytest.fixture
def people(api, member, befriend):
    alice, bob, mallory = member("alice"), member("bob"), member("mallory")
    befriend(alice, bob)
    [book] = api.sql("insert into catalog.book (title) values ('Kindred') returning book_id")
    [copy] = api.sql("insert into catalog.copy (book_id, owner_id, current_holder_id, condition_grade) "
                     "values (%s, %s, %s, 9) returning copy_id::text", (book["book_id"], alice.user_id, alice.user_id))
    return alice, bob, mallory, copy["copy_id"]


def accepted_handover(alice, bob, copy, kind="borrow") -> str:
    request = bob.client.post("/v1/requests", json={"copy_id": copy, "kind": kind}).json()
    return alice.client.post(f"/v1/requests/{request['request_id']}/accept").json()["handover_id"]


def test_the_receiver_completes_a_borrow_with_a_rating(api, people):
    alice, bob, _, copy = people
    handover = accepted_handover(alice, bob, copy)
    assert bob.client.get("/v1/handovers", params={"status": "in_progress"}).json()["count"] == 1
    r = bob.client.post(f"/v1/handovers/{handover}/complete", json={"condition_rating": 7, "note": "spine creased"})
    assert r.status_code == 200, r.text
    done = r.json()
    assert (done["status"], done["kind"], done["origin"], done["condition_rating"]) == (
        "completed", "borrow", "request", 7)
    assert copy_row(api, copy) == {"owner_id": alice.user_id, "holder_id": bob.user_id, "status": "on_loan",
                                   "condition_grade": 7}
    assert bob.client.get(f"/v1/requests/{done['request_id']}").json()["status"] == "completed"
    # ExchangeCompleted has exactly the shape of DESIGN.md; degradation_rating is the receiver's rating.
    [completed] = events(api, "ExchangeCompleted")
    assert set(completed) == {"event", "exchange_id", "copy_id", "from_user_id", "to_user_id", "degradation_rating",
                              "timestamp"}
    assert (completed["exchange_id"], completed["from_user_id"], completed["to_user_id"],
            completed["degradation_rating"]) == (handover, alice.user_id, bob.user_id, 7)
    assert api.sql("select rating, note from exchange.degradation_rating") == [{"rating": 7, "note": "spine creased"}]
    assert alice.client.get("/v1/handovers").json()["data"][0] == done


def test_keep_moves_ownership(api, people):
    alice, bob, _, copy = people
    handover = accepted_handover(alice, bob, copy, kind="keep")
    bob.client.post(f"/v1/handovers/{handover}/complete", json={"condition_rating": 10})
    assert copy_row(api, copy) == {"owner_id": bob.user_id, "holder_id": bob.user_id, "status": "available",
                                   "condition_grade": 10}


def test_either_side_cancels_a_hand_over_in_progress(api, people):
    alice, bob, _, copy = people
    handover = accepted_handover(alice, bob, copy)
    r = bob.client.post(f"/v1/handovers/{handover}/cancel")
    assert (r.status_code, r.json()["status"], r.json()["cancelled_by"]) == (200, "cancelled", bob.user_id)
    assert bob.client.get(f"/v1/requests/{r.json()['request_id']}").json()["status"] == "cancelled"
    assert copy_row(api, copy)["status"] == "available"
    [cancelled] = events(api, "RequestCancelled")
    assert (cancelled["exchange_id"], cancelled["cancelled_by"]) == (handover, bob.user_id)


def test_refused_hand_over_steps_change_nothing(api, people, db_state):
    alice, bob, mallory, copy = people
    handover = accepted_handover(alice, bob, copy)
    missing = str(uuid.uuid4())
    before = db_state()
    # Not yours: a 404 exactly like a hand-over that does not exist.
    for path in ("/v1/handovers/{id}/complete", "/v1/handovers/{id}/cancel"):
        seen = problem(mallory.client.post(path.format(id=handover), json={"condition_rating": 5}), 404, "not_found")
        unseen = problem(mallory.client.post(path.format(id=missing), json={"condition_rating": 5}), 404, "not_found")
        assert seen["detail"].replace(handover, "ID") == unseen["detail"].replace(missing, "ID")
    problem(mallory.client.get(f"/v1/handovers/{handover}"), 404, "not_found")
    problem(mallory.client.post(f"/v1/copies/{copy}/return"), 404, "not_found")
    # The giver does not confirm; the receiver confirms with a rating in 0..10.
    problem(alice.client.post(f"/v1/handovers/{handover}/complete", json={"condition_rating": 5}), 409,
            "invalid_transition")
    for body in ({"condition_rating": 11}, {"condition_rating": -1}, {}, {"condition_rating": "good"},
                 {"condition_rating": 5, "extra": 1}):
        problem(bob.client.post(f"/v1/handovers/{handover}/complete", json=body), 422, "invalid_request")
    problem(alice.client.post(f"/v1/copies/{copy}/return"), 409, "invalid_transition")  # not on loan
    assert db_state() == before

    bob.client.post(f"/v1/handovers/{handover}/complete", json={"condition_rating": 5})
    before = db_state()
    problem(bob.client.post(f"/v1/handovers/{handover}/complete", json={"condition_rating": 5}), 409,
            "invalid_transition")
    problem(alice.client.post(f"/v1/handovers/{handover}/cancel"), 409, "invalid_transition")
    assert db_state() == before


def test_a_replayed_completion_returns_the_first_response(api, people):
    alice, bob, _, copy = people
    handover = accepted_handover(alice, bob, copy)
    first = bob.client.post(f"/v1/handovers/{handover}/complete", json={"condition_rating": 4},
                            headers={"Idempotency-Key": "got-it"})
    again = bob.client.post(f"/v1/handovers/{handover}/complete", json={"condition_rating": 4},
                            headers={"Idempotency-Key": "got-it"})
    assert (first.status_code, again.status_code) == (200, 200)
    assert again.json() == first.json() and again.headers["Idempotent-Replayed"] == "true"
    assert len(events(api, "ExchangeCompleted")) == 1
    problem(bob.client.post(f"/v1/handovers/{handover}/complete", json={"condition_rating": 3},
                            headers={"Idempotency-Key": "got-it"}), 422, "idempotency_key_reused")


def test_a_borrowed_copy_comes_back_through_a_return_hand_over(api, people, db_state):
    alice, bob, _, copy = people
    bob.client.post(f"/v1/handovers/{accepted_handover(alice, bob, copy)}/complete", json={"condition_rating": 8})

    r = bob.client.post(f"/v1/copies/{copy}/return")
    assert r.status_code == 201, r.text
    back = r.json()
    assert (back["kind"], back["origin"], back["from_user_id"], back["to_user_id"], back["request_id"]) == (
        "return", "return", bob.user_id, alice.user_id, None)
    assert copy_row(api, copy)["status"] == "requested"
    [started] = events(api, "ReturnStarted")
    assert (started["exchange_id"], started["started_by"]) == (back["handover_id"], bob.user_id)

    before = db_state()
    problem(alice.client.post(f"/v1/copies/{copy}/return"), 409, "invalid_transition")  # already under way
    problem(bob.client.post(f"/v1/handovers/{back['handover_id']}/complete", json={"condition_rating": 8}), 409,
            "invalid_transition")  # the owner receives it, so the owner confirms
    assert db_state() == before

    r = alice.client.post(f"/v1/handovers/{back['handover_id']}/complete", json={"condition_rating": 6})
    assert (r.status_code, r.json()["status"]) == (200, "completed")
    assert copy_row(api, copy) == {"owner_id": alice.user_id, "holder_id": alice.user_id, "status": "available",
                                   "condition_grade": 6}
    assert [e["degradation_rating"] for e in events(api, "ExchangeCompleted")] == [8, 6]


def test_a_return_can_be_called_off(api, people):
    alice, bob, _, copy = people
    bob.client.post(f"/v1/handovers/{accepted_handover(alice, bob, copy)}/complete", json={"condition_rating": 8})
    back = alice.client.post(f"/v1/copies/{copy}/return").json()  # the owner asks for it back
    r = bob.client.post(f"/v1/handovers/{back['handover_id']}/cancel")
    assert (r.status_code, r.json()["status"]) == (200, "cancelled")
    assert copy_row(api, copy)["status"] == "on_loan"
    [cancelled] = events(api, "ReturnCancelled")
    assert cancelled["cancelled_by"] == bob.user_id
