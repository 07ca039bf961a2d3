"""Requests over HTTP: every allowed step, every refused one changing nothing, idempotent and concurrent creates."""

from __future__ import annotations

import threading
import uuid

import pytest

from covr_core.shared.events import EVENT_TYPES

PROBLEM = "https://covr.dev/problems/"


def copy_of(api, holder, grade=8) -> str:
    """A copy held and owned by `holder`, made in SQL (set-up only: copies have their own API and tests)."""
    [book] = api.sql("insert into catalog.book (title) values ('The Dispossessed') returning book_id")
    [copy] = api.sql("insert into catalog.copy (book_id, owner_id, current_holder_id, condition_grade) "
                     "values (%s, %s, %s, %s) returning copy_id::text", (book["book_id"], holder.user_id,
                                                                         holder.user_id, grade))
    return copy["copy_id"]


def events(api, type_):
    rows = api.sql("select payload from outbox.event where type = %s order by event_id", (type_,))
    return [EVENT_TYPES[type_].model_validate(r["payload"]).model_dump(mode="json") for r in rows]


def problem(r, status, code):
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["type"] == PROBLEM + code
    return r.json()


@pytest.fixture
def people(api, member, befriend):
    alice, bob, carol, mallory = (member(h) for h in ("alice", "bob", "carol", "mallory"))
    befriend(alice, bob)
    befriend(carol, alice)
    return alice, bob, carol, mallory, copy_of(api, alice)


def test_request_then_accept(api, people):
    alice, bob, carol, _, copy = people
    r = bob.client.post("/v1/requests", json={"copy_id": copy, "kind": "keep"})
    assert r.status_code == 201, r.text
    request = r.json()
    assert (request["status"], request["kind"], request["holder_id"], request["handover_id"]) == (
        "pending", "keep", alice.user_id, None)
    # RequestCreated has exactly the shape of DESIGN.md.
    [created] = events(api, "RequestCreated")
    assert set(created) == {"event", "request_id", "requester_id", "copy_id", "current_holder_id", "timestamp"}
    assert (created["request_id"], created["requester_id"], created["copy_id"], created["current_holder_id"]) == (
        request["request_id"], bob.user_id, copy, alice.user_id)
    assert created["timestamp"].endswith("Z")

    incoming = alice.client.get("/v1/requests", params={"role": "incoming", "status": "pending"}).json()
    assert incoming["count"] == 1 and incoming["data"][0]["request_id"] == request["request_id"]
    assert bob.client.get("/v1/requests", params={"role": "incoming"}).json()["count"] == 0
    assert bob.client.get(f"/v1/requests/{request['request_id']}").json() == request

    carols = carol.client.post("/v1/requests", json={"copy_id": copy}).json()
    accepted = alice.client.post(f"/v1/requests/{request['request_id']}/accept")
    assert accepted.status_code == 200, accepted.text
    assert accepted.json()["status"] == "accepted" and accepted.json()["handover_id"]
    assert alice.client.get(f"/v1/requests/{carols['request_id']}").json()["status"] == "declined"
    [declined] = events(api, "RequestDeclined")
    assert (declined["request_id"], declined["requester_id"], declined["accepted_request_id"]) == (
        carols["request_id"], carol.user_id, request["request_id"])
    [announced] = events(api, "ExchangeAccepted")
    assert (announced["exchange_id"], announced["request_id"], announced["to_user_id"]) == (
        accepted.json()["handover_id"], request["request_id"], bob.user_id)
    assert api.sql("select status from catalog.copy where copy_id = %s", (copy,)) == [{"status": "requested"}]


def test_decline_and_cancel(api, people):
    alice, bob, carol, _, copy = people
    bobs = bob.client.post("/v1/requests", json={"copy_id": copy}).json()
    carols = carol.client.post("/v1/requests", json={"copy_id": copy}).json()
    r = alice.client.post(f"/v1/requests/{bobs['request_id']}/decline")
    assert (r.status_code, r.json()["status"]) == (200, "declined")
    r = carol.client.post(f"/v1/requests/{carols['request_id']}/cancel")
    assert (r.status_code, r.json()["status"]) == (200, "cancelled")
    [cancelled] = events(api, "RequestCancelled")
    assert (cancelled["cancelled_by"], cancelled["exchange_id"]) == (carol.user_id, None)
    [declined] = events(api, "RequestDeclined")
    assert (declined["requester_id"], declined["accepted_request_id"]) == (bob.user_id, None)

    # An accepted request: either side may cancel it, and its hand-over with it.
    again = bob.client.post("/v1/requests", json={"copy_id": copy}).json()
    alice.client.post(f"/v1/requests/{again['request_id']}/accept")
    r = alice.client.post(f"/v1/requests/{again['request_id']}/cancel")
    assert (r.status_code, r.json()["status"]) == (200, "cancelled")
    handover = bob.client.get(f"/v1/handovers/{r.json()['handover_id']}").json()
    assert (handover["status"], handover["cancelled_by"]) == ("cancelled", alice.user_id)
    assert api.sql("select status from catalog.copy where copy_id = %s", (copy,)) == [{"status": "available"}]


def test_someone_elses_request_or_copy_is_a_404_that_reveals_nothing(api, people, db_state):
    alice, bob, _, mallory, copy = people
    request = bob.client.post("/v1/requests", json={"copy_id": copy}).json()["request_id"]
    missing = str(uuid.uuid4())
    before = db_state()

    def same_404(method, path):
        seen = problem(mallory.client.request(method, path.format(id=request)), 404, "not_found")
        unseen = problem(mallory.client.request(method, path.format(id=missing)), 404, "not_found")
        assert seen["detail"].replace(request, "ID") == unseen["detail"].replace(missing, "ID")

    for step in ("accept", "decline", "cancel"):
        same_404("POST", "/v1/requests/{id}/" + step)
    same_404("GET", "/v1/requests/{id}")
    # A copy held by someone who is not your contact is as absent as one that does not exist.
    r_seen = problem(mallory.client.post("/v1/requests", json={"copy_id": copy}), 404, "not_found")
    r_unseen = problem(mallory.client.post("/v1/requests", json={"copy_id": missing}), 404, "not_found")
    assert r_seen["detail"].replace(copy, "ID") == r_unseen["detail"].replace(missing, "ID")
    assert mallory.client.get("/v1/requests").json() == {"data": [], "count": 0}
    assert db_state() == before


def test_steps_in_the_wrong_state_or_by_the_wrong_side_are_409s_that_change_nothing(api, people, db_state):
    alice, bob, carol, _, copy = people
    pending = bob.client.post("/v1/requests", json={"copy_id": copy}).json()["request_id"]
    before = db_state()
    problem(bob.client.post(f"/v1/requests/{pending}/accept"), 409, "invalid_transition")
    problem(bob.client.post(f"/v1/requests/{pending}/decline"), 409, "invalid_transition")
    problem(alice.client.post(f"/v1/requests/{pending}/cancel"), 409, "invalid_transition")
    problem(bob.client.post("/v1/requests", json={"copy_id": copy}), 409, "conflict")  # one open request each
    assert db_state() == before

    alice.client.post(f"/v1/requests/{pending}/decline")
    before = db_state()
    for who, step in ((alice, "accept"), (alice, "decline"), (bob, "cancel")):
        detail = problem(who.client.post(f"/v1/requests/{pending}/{step}"), 409, "invalid_transition")["detail"]
        assert pending in detail and "declined" in detail
    assert db_state() == before

    carols = carol.client.post("/v1/requests", json={"copy_id": copy}).json()["request_id"]
    alice.client.post(f"/v1/requests/{carols}/accept")
    before = db_state()
    problem(carol.client.post(f"/v1/requests/{carols}/accept"), 409, "invalid_transition")
    problem(alice.client.post(f"/v1/requests/{carols}/accept"), 409, "invalid_transition")
    problem(alice.client.post(f"/v1/requests/{carols}/decline"), 409, "invalid_transition")
    problem(bob.client.post("/v1/requests", json={"copy_id": copy}), 409, "invalid_transition")  # not available
    assert db_state() == before


def test_bad_request_data_is_a_422_that_changes_nothing(api, people, db_state):
    alice, bob, _, _, copy = people
    before = db_state()
    for body in ({"copy_id": copy, "kind": "swap"}, {"copy_id": "not-a-uuid"}, {},
                 {"copy_id": copy, "kind": "borrow", "admin": True}):
        problem(bob.client.post("/v1/requests", json=body), 422, "invalid_request")
    problem(alice.client.post("/v1/requests", json={"copy_id": copy}), 422, "invalid_input")  # your own copy
    problem(bob.client.post("/v1/requests/not-a-uuid/accept"), 422, "invalid_request")
    problem(bob.client.get("/v1/requests", params={"limit": 0}), 422, "invalid_request")
    assert db_state() == before


def test_twenty_concurrent_posts_with_one_key_create_one_request(api, people):
    _, bob, _, _, copy = people
    barrier, responses = threading.Barrier(20), []

    def post():
        with api.client(bob.access_token) as client:
            barrier.wait()
            responses.append(client.post("/v1/requests", json={"copy_id": copy},
                                         headers={"Idempotency-Key": "one-request"}))

    threads = [threading.Thread(target=post) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [r.status_code for r in responses] == [201] * 20
    assert len({r.json()["request_id"] for r in responses}) == 1
    assert sum(r.headers.get("Idempotent-Replayed") == "true" for r in responses) == 19
    assert api.sql("select count(*) as n from exchange.request") == [{"n": 1}]
    assert len(events(api, "RequestCreated")) == 1
    # The same key with another body is refused.
    problem(bob.client.post("/v1/requests", json={"copy_id": copy, "kind": "keep"},
                            headers={"Idempotency-Key": "one-request"}), 422, "idempotency_key_reused")


def test_fifty_concurrent_requests_one_accept_wins_the_rest_declined(api, member, befriend):
    holder = member("holder")
    askers = [member(f"asker{i:02d}", quick=True) for i in range(50)]
    for a in askers:
        befriend(holder, a)
    copy = copy_of(api, holder)
    barrier, made = threading.Barrier(50), []

    def ask(who):
        with api.client(who.access_token) as client:
            barrier.wait()
            made.append(client.post("/v1/requests", json={"copy_id": copy}))

    threads = [threading.Thread(target=ask, args=(a,)) for a in askers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [r.status_code for r in made] == [201] * 50, [r.text for r in made if r.status_code != 201]
    ids = [r.json()["request_id"] for r in made]

    # Two accepts of two different requests at once: exactly one wins.
    barrier, answers = threading.Barrier(2), {}

    def accept(request_id):
        with api.client(holder.access_token) as client:
            barrier.wait()
            answers[request_id] = client.post(f"/v1/requests/{request_id}/accept")

    threads = [threading.Thread(target=accept, args=(i,)) for i in ids[:2]]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(r.status_code for r in answers.values()) == [200, 409]
    [winner] = [i for i, r in answers.items() if r.status_code == 200]

    statuses = api.sql("select status, count(*) as n from exchange.request group by status order by status")
    assert statuses == [{"status": "accepted", "n": 1}, {"status": "declined", "n": 49}]
    declined = events(api, "RequestDeclined")
    assert len(declined) == 49 and {e["accepted_request_id"] for e in declined} == {winner}
    assert len({e["requester_id"] for e in declined}) == 49
    assert api.sql("select count(*) as n from exchange.exchange where status = 'in_progress'") == [{"n": 1}]
