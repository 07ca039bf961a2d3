"""Suspected exchanges over HTTP: both sides see them, either confirms (a completed hand-over) or dismisses."""

from __future__ import annotations

import uuid

import psycopg
import pytest
from psycopg.rows import dict_row

from covr_core.exchange import suspected
from covr_core.shared.events import EVENT_TYPES

PROBLEM = "https://covr.dev/problems/"


def problem(r, status, code):
    assert r.status_code == status, r.text
    assert r.json()["type"] == PROBLEM + code
    return r.json()


@pytest.fixture
def case(api, member):
    """Alice holds a copy; bob's photo of it made ingest suspect it went to him (dedup calls `suspect`)."""
    alice, bob, mallory = member("alice"), member("bob"), member("mallory")
    [book] = api.sql("insert into catalog.book (title) values ('Solaris') returning book_id")
    [copy] = api.sql("insert into catalog.copy (book_id, owner_id, current_holder_id, condition_grade) "
                     "values (%s, %s, %s, 6) returning copy_id::text", (book["book_id"], alice.user_id, alice.user_id))
    [image] = api.sql("insert into media.image (object_key, uploader_id, status, byte_size, sha256, phash, format) "
                      "values (%s, %s, 'accepted', 10, repeat('c', 64), 3, 'jpeg') returning image_id::text",
                      (f"uploads/{bob.user_id}/1.jpg", bob.user_id))
    with psycopg.connect(api.db_url, autocommit=True, row_factory=dict_row) as conn:
        suspected_id = suspected.suspect(conn, image["image_id"], copy["copy_id"], bob.user_id, alice.user_id)
    return alice, bob, mallory, copy["copy_id"], suspected_id


def test_both_sides_see_it_and_nobody_else(api, case):
    alice, bob, mallory, copy, suspected_id = case
    for who in (alice, bob):
        listed = who.client.get("/v1/suspected-exchanges", params={"status": "pending"}).json()
        assert listed["count"] == 1
        assert (listed["data"][0]["suspected_exchange_id"], listed["data"][0]["holder_id"]) == (
            suspected_id, alice.user_id)
    assert mallory.client.get("/v1/suspected-exchanges").json() == {"data": [], "count": 0}
    problem(mallory.client.get(f"/v1/suspected-exchanges/{suspected_id}"), 404, "not_found")
    [announced] = api.sql("select payload from outbox.event where type = 'ExchangeSuspected'")
    EVENT_TYPES["ExchangeSuspected"].model_validate(announced["payload"])


def test_the_holder_confirms_it_becomes_a_completed_keep(api, case):
    alice, bob, _, copy, suspected_id = case
    r = alice.client.post(f"/v1/suspected-exchanges/{suspected_id}/confirm")
    assert r.status_code == 200, r.text
    assert (r.json()["status"], r.json()["decided_by"]) == ("confirmed", alice.user_id)
    handover = bob.client.get(f"/v1/handovers/{r.json()['handover_id']}").json()
    assert (handover["status"], handover["kind"], handover["origin"], handover["from_user_id"],
            handover["to_user_id"], handover["condition_rating"]) == (
        "completed", "keep", "suspected", alice.user_id, bob.user_id, None)
    assert api.sql("select owner_id::text, current_holder_id::text, status, condition_grade from catalog.copy") == [
        {"owner_id": bob.user_id, "current_holder_id": bob.user_id, "status": "available", "condition_grade": 6}]
    [completed] = api.sql("select payload from outbox.event where type = 'ExchangeCompleted'")
    event = EVENT_TYPES["ExchangeCompleted"].model_validate(completed["payload"])
    assert (event.exchange_id, event.degradation_rating) == (handover["handover_id"], None)


def test_the_uploader_confirms_with_a_rating(api, case):
    _, bob, _, copy, suspected_id = case
    r = bob.client.post(f"/v1/suspected-exchanges/{suspected_id}/confirm", json={"condition_rating": 3})
    assert r.status_code == 200, r.text
    assert api.sql("select condition_grade from catalog.copy") == [{"condition_grade": 3}]


def test_dismissed_by_either_side_and_refusals_change_nothing(api, case, db_state):
    alice, bob, mallory, copy, suspected_id = case
    missing = str(uuid.uuid4())
    before = db_state()
    for step in ("confirm", "dismiss"):
        seen = problem(mallory.client.post(f"/v1/suspected-exchanges/{suspected_id}/{step}"), 404, "not_found")
        unseen = problem(mallory.client.post(f"/v1/suspected-exchanges/{missing}/{step}"), 404, "not_found")
        assert seen["detail"].replace(suspected_id, "ID") == unseen["detail"].replace(missing, "ID")
    # The holder does not have the copy, so only the uploader rates it; ratings are 0..10.
    problem(alice.client.post(f"/v1/suspected-exchanges/{suspected_id}/confirm", json={"condition_rating": 5}),
            422, "invalid_input")
    problem(bob.client.post(f"/v1/suspected-exchanges/{suspected_id}/confirm", json={"condition_rating": 11}),
            422, "invalid_request")
    assert db_state() == before

    r = bob.client.post(f"/v1/suspected-exchanges/{suspected_id}/dismiss")
    assert (r.status_code, r.json()["status"], r.json()["handover_id"]) == (200, "dismissed", None)
    [dismissed] = api.sql("select payload from outbox.event where type = 'SuspectedExchangeDismissed'")
    assert EVENT_TYPES["SuspectedExchangeDismissed"].model_validate(dismissed["payload"]).dismissed_by == bob.user_id
    before = db_state()
    problem(alice.client.post(f"/v1/suspected-exchanges/{suspected_id}/confirm"), 409, "invalid_transition")
    problem(alice.client.post(f"/v1/suspected-exchanges/{suspected_id}/dismiss"), 409, "invalid_transition")
    assert db_state() == before
    assert api.sql("select current_holder_id::text from catalog.copy") == [{"current_holder_id": alice.user_id}]
