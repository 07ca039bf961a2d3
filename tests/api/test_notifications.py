"""Notifications over real HTTP: the inbox a member reads, filtered and paged, marked read; nobody else's."""

from __future__ import annotations

import uuid

import psycopg
from psycopg.rows import dict_row

from covr_core.notifications.mail import SmtpMailer
from covr_core.notifications.worker import WorkerConfig, run_round
from covr_core.shared.events import ExchangeCompleted, RequestCreated
from covr_core.shared.outbox import append_event


def _copy(api, holder) -> str:
    [book] = api.sql("insert into catalog.book (title) values ('The Quiet Orchard') returning book_id")
    [copy] = api.sql("insert into catalog.copy (book_id, owner_id, current_holder_id) values (%s, %s, %s) "
                     "returning copy_id", (book["book_id"], holder.user_id, holder.user_id))
    return str(copy["copy_id"])


def _announce(api, *events) -> None:
    with psycopg.connect(api.db_url, autocommit=True, row_factory=dict_row) as conn:
        for event in events:
            with conn.transaction():
                append_event(conn, event)


def _deliver(api, config: WorkerConfig | None = None):
    with psycopg.connect(api.db_url, autocommit=True, row_factory=dict_row) as conn:
        return run_round(conn, config or WorkerConfig(mailer_factory=None))


def _requested(api, requester, holder, copy_id) -> RequestCreated:
    return RequestCreated(request_id=str(uuid.uuid4()), requester_id=requester.user_id, copy_id=copy_id,
                          current_holder_id=holder.user_id)


def test_the_holder_reads_a_request_in_the_inbox_and_by_mail(api, member, smtp_server):
    alice = member("alice", email="alice@example.org", display_name="Alice Liddell")
    bob = member("bob", display_name="Bob Marley")
    copy_id = _copy(api, alice)
    _announce(api, _requested(api, bob, alice, copy_id))
    mail = WorkerConfig(mailer_factory=lambda: SmtpMailer(smtp_server.host, smtp_server.port, timeout=10),
                        from_address="covr@example.org")
    assert _deliver(api, mail).sent == 1

    r = alice.client.get("/v1/notifications")
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["count"], body["unread"]) == (1, 1)
    [n] = body["data"]
    assert n["kind"] == "request_created" and n["is_read"] is False and n["read_at"] is None
    assert n["text"] == "Bob Marley asked for your copy of \u201cThe Quiet Orchard\u201d."
    assert (n["copy_id"], n["other_user_id"], n["other_name"], n["title"]) == (
        copy_id, bob.user_id, "Bob Marley", "The Quiet Orchard")
    assert bob.client.get("/v1/notifications").json() == {"data": [], "count": 0, "unread": 0}

    [message] = smtp_server.messages
    assert n["text"] in message.get_content() and message["To"] == "Alice Liddell <alice@example.org>"


def test_unread_filter_pages_and_mark_read(api, member):
    alice, bob = member("alice"), member("bob")
    copy_id = _copy(api, alice)
    _announce(api, *[_requested(api, bob, alice, copy_id) for _ in range(5)])
    _deliver(api)

    page1 = alice.client.get("/v1/notifications", params={"limit": 2}).json()
    page3 = alice.client.get("/v1/notifications", params={"limit": 2, "offset": 4}).json()
    assert page1["count"] == page3["count"] == 5
    assert len(page1["data"]) == 2 and len(page3["data"]) == 1
    ids = [n["notification_id"] for n in page1["data"]]
    assert ids == sorted(ids, reverse=True)  # newest first

    r = alice.client.post(f"/v1/notifications/{ids[0]}/read")
    assert r.status_code == 200, r.text
    assert r.json()["is_read"] is True and r.json()["read_at"]
    again = alice.client.post(f"/v1/notifications/{ids[0]}/read")
    assert again.status_code == 200 and again.json()["read_at"] == r.json()["read_at"]

    unread = alice.client.get("/v1/notifications", params={"unread": "true"}).json()
    read = alice.client.get("/v1/notifications", params={"unread": "false"}).json()
    assert (unread["count"], unread["unread"], read["count"]) == (4, 4, 1)
    assert ids[0] not in [n["notification_id"] for n in unread["data"]]
    assert [n["notification_id"] for n in read["data"]] == [ids[0]]

    r = alice.client.post("/v1/notifications/read-all")
    assert r.status_code == 200 and r.json() == {"marked": 4}
    assert alice.client.get("/v1/notifications").json()["unread"] == 0


def test_someone_elses_notification_answers_like_one_that_does_not_exist(api, member, db_state):
    alice, bob = member("alice"), member("bob")
    copy_id = _copy(api, alice)
    _announce(api, _requested(api, bob, alice, copy_id))
    _deliver(api)
    [mine] = alice.client.get("/v1/notifications").json()["data"]
    missing = mine["notification_id"] + 1000
    before = db_state()

    theirs = bob.client.post(f"/v1/notifications/{mine['notification_id']}/read")
    nowhere = bob.client.post(f"/v1/notifications/{missing}/read")

    assert theirs.status_code == nowhere.status_code == 404
    assert theirs.headers["content-type"].startswith("application/problem+json")
    a, b = theirs.json(), nowhere.json()
    assert a["type"] == b["type"] == "https://covr.dev/problems/not_found"
    assert a["detail"] == f"notification {mine['notification_id']} not found"
    assert b["detail"] == f"notification {missing} not found"
    assert {k: v for k, v in a.items() if k not in ("detail", "notification_id")} == \
        {k: v for k, v in b.items() if k not in ("detail", "notification_id")}
    assert db_state() == before
    assert alice.client.get("/v1/notifications").json()["unread"] == 1


def test_bad_parameters_are_422_and_change_nothing(api, member, db_state):
    alice = member("alice")
    before = db_state()
    for params in ({"limit": 0}, {"limit": 101}, {"offset": -1}, {"unread": "perhaps"}):
        r = alice.client.get("/v1/notifications", params=params)
        assert r.status_code == 422, (params, r.text)
        assert r.json()["type"] == "https://covr.dev/problems/invalid_request"
    for bad in ("0", "-3", "abc", str(2**63)):
        r = alice.client.post(f"/v1/notifications/{bad}/read")
        assert r.status_code == 422, (bad, r.text)
    assert db_state() == before


def test_marking_read_with_an_idempotency_key_replays_the_first_answer(api, member):
    alice, bob = member("alice"), member("bob")
    copy_id = _copy(api, alice)
    _announce(api, _requested(api, bob, alice, copy_id), _requested(api, bob, alice, copy_id))
    _deliver(api)
    first_id, second_id = sorted(n["notification_id"] for n in alice.client.get("/v1/notifications").json()["data"])
    key = {"Idempotency-Key": str(uuid.uuid4())}

    first = alice.client.post(f"/v1/notifications/{first_id}/read", headers=key)
    replay = alice.client.post(f"/v1/notifications/{first_id}/read", headers=key)
    assert first.status_code == replay.status_code == 200
    assert replay.json() == first.json() and replay.headers.get("Idempotent-Replayed") == "true"

    reused = alice.client.post(f"/v1/notifications/{second_id}/read", headers=key)
    assert reused.status_code == 422
    assert reused.json()["type"] == "https://covr.dev/problems/idempotency_key_reused"


def test_a_completed_hand_over_is_in_both_inboxes(api, member):
    alice, bob = member("alice", display_name="Alice Liddell"), member("bob", display_name="Bob Marley")
    copy_id = _copy(api, alice)
    _announce(api, ExchangeCompleted(exchange_id=str(uuid.uuid4()), copy_id=copy_id, from_user_id=alice.user_id,
                                     to_user_id=bob.user_id, degradation_rating=7))
    _deliver(api)

    texts = {m.handle: [n["text"] for n in m.client.get("/v1/notifications").json()["data"]] for m in (alice, bob)}
    assert texts == {
        "alice": ["The hand-over of \u201cThe Quiet Orchard\u201d between you and Bob Marley is complete."],
        "bob": ["The hand-over of \u201cThe Quiet Orchard\u201d between you and Alice Liddell is complete."],
    }


def test_the_routes_are_in_the_openapi_document(api):
    with api.client() as anon:
        spec = anon.get("/openapi.json").json()
    assert {"/v1/notifications", "/v1/notifications/{notification_id}/read", "/v1/notifications/read-all"} <= set(
        spec["paths"])
    listing = spec["paths"]["/v1/notifications"]["get"]
    assert {p["name"] for p in listing["parameters"]} == {"unread", "limit", "offset"}
    assert {"401", "422"} <= set(listing["responses"])
    assert "404" in spec["paths"]["/v1/notifications/{notification_id}/read"]["post"]["responses"]
    assert "NotificationsPublic" in spec["components"]["schemas"]
