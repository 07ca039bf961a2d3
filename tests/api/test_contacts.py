"""Contacts over HTTP: every allowed step, every refused one (changing nothing), search, paging and replays."""

from __future__ import annotations

import pytest

PROBLEM = "https://covr.dev/problems/"


def test_invite_accept_list_and_remove(api, member):
    alice, bob = member("alice"), member("bob")

    r = alice.client.post("/v1/contacts", json={"handle": "bob"})
    assert r.status_code == 201, r.text
    assert (r.json()["user_id"], r.json()["status"], r.json()["direction"]) == (bob.user_id, "pending", "outgoing")
    incoming = bob.client.get("/v1/contacts", params={"status": "pending", "direction": "incoming"}).json()
    assert incoming["count"] == 1 and incoming["data"][0]["handle"] == "alice"

    r = bob.client.post(f"/v1/contacts/{alice.user_id}/accept")
    assert r.status_code == 200 and r.json()["status"] == "accepted" and r.json()["accepted_at"]
    assert alice.client.get(f"/v1/contacts/{bob.user_id}").json()["status"] == "accepted"

    assert alice.client.delete(f"/v1/contacts/{bob.user_id}").status_code == 204
    assert bob.client.get("/v1/contacts").json() == {"data": [], "count": 0}


def test_decline_then_block_hides_you_from_the_blocked_member(api, member):
    alice, bob = member("alice"), member("bob")
    alice.client.post("/v1/contacts", json={"handle": "bob"})
    assert bob.client.post(f"/v1/contacts/{alice.user_id}/decline").status_code == 204
    assert alice.client.get("/v1/contacts").json()["count"] == 0

    r = bob.client.post(f"/v1/contacts/{alice.user_id}/block")
    assert r.status_code == 200 and r.json()["status"] == "blocked"

    assert alice.client.get("/v1/contacts/search", params={"q": "bo"}).json() == {"data": [], "count": 0}
    r = alice.client.post("/v1/contacts", json={"handle": "bob"})
    unknown = alice.client.post("/v1/contacts", json={"handle": "nobody"})
    assert r.status_code == unknown.status_code == 404
    assert r.json()["type"] == unknown.json()["type"] == PROBLEM + "not_found"
    # Bob sees his block and lifts it.
    assert [m["status"] for m in bob.client.get("/v1/contacts/search", params={"q": "ali"}).json()["data"]] == [
        "blocked"]
    assert bob.client.delete(f"/v1/contacts/{alice.user_id}").status_code == 204
    assert alice.client.post("/v1/contacts", json={"handle": "bob"}).status_code == 201


def test_search_and_paging(api, member):
    me = member("me")
    for handle in ("ann", "anna", "annika", "ben"):
        member(handle, display_name=f"{handle.title()} Lindqvist")
    found = me.client.get("/v1/contacts/search", params={"q": "ann"}).json()
    assert [m["handle"] for m in found["data"]] == ["ann", "anna", "annika"]
    assert [m["handle"] for m in me.client.get("/v1/contacts/search", params={"q": "lind", "limit": 2}).json()[
        "data"]] == ["ann", "anna"]
    for handle in ("ann", "anna", "annika", "ben"):
        me.client.post("/v1/contacts", json={"handle": handle})
    page = me.client.get("/v1/contacts", params={"limit": 3, "offset": 3}).json()
    assert page["count"] == 4 and [c["handle"] for c in page["data"]] == ["ben"]


def test_forbidden_contact_steps_answer_problems_and_change_nothing(api, member, db_state):
    alice, bob, carol = member("alice"), member("bob"), member("carol")
    alice.client.post("/v1/contacts", json={"handle": "bob"})
    carol.client.post(f"/v1/contacts/{alice.user_id}/block")
    nobody = "0f0e0d0c-0b0a-4909-8807-060504030201"
    attempts = [
        (bob, "post", f"/v1/contacts/{carol.user_id}/accept", None, 404, "not_found"),
        (bob, "post", f"/v1/contacts/{nobody}/accept", None, 404, "not_found"),
        (bob, "post", "/v1/contacts/not-a-uuid/decline", None, 404, "not_found"),
        (bob, "delete", f"/v1/contacts/{carol.user_id}", None, 404, "not_found"),
        (bob, "post", f"/v1/contacts/{nobody}/block", None, 404, "not_found"),
        (alice, "post", f"/v1/contacts/{carol.user_id}/accept", None, 404, "not_found"),  # blocked by carol
        (alice, "delete", f"/v1/contacts/{carol.user_id}", None, 404, "not_found"),
        (alice, "post", "/v1/contacts", {"handle": "carol"}, 404, "not_found"),
        (alice, "post", f"/v1/contacts/{bob.user_id}/accept", None, 409, "invalid_transition"),  # her own
        (alice, "post", f"/v1/contacts/{bob.user_id}/decline", None, 409, "invalid_transition"),
        (alice, "post", "/v1/contacts", {"handle": "bob"}, 409, "conflict"),
        (carol, "post", "/v1/contacts", {"handle": "alice"}, 409, "invalid_transition"),  # her block stands
        (carol, "post", f"/v1/contacts/{alice.user_id}/block", None, 409, "invalid_transition"),
        (alice, "post", "/v1/contacts", {"handle": "alice"}, 422, "invalid_input"),
        (alice, "post", "/v1/contacts", {"handle": ""}, 422, "invalid_request"),
        (alice, "post", "/v1/contacts", {"handle": "bob", "status": "accepted"}, 422, "invalid_request"),
        (alice, "get", "/v1/contacts?status=friends", None, 422, "invalid_request"),
        (alice, "get", "/v1/contacts?limit=0", None, 422, "invalid_request"),
        (alice, "get", "/v1/contacts/search?q=", None, 422, "invalid_request"),
        (alice, "get", f"/v1/contacts/{carol.user_id}", None, 404, "not_found"),
    ]
    before = db_state()
    for who, method, url, body, status, code in attempts:
        r = who.client.request(method.upper(), url, json=body)
        assert (r.status_code, r.json()["type"]) == (status, PROBLEM + code), (who.handle, method, url, r.text)
        assert r.headers["content-type"].startswith("application/problem+json")
    assert db_state() == before


def test_a_replayed_invitation_returns_the_first_answer(api, member, db_state):
    alice, bob = member("alice"), member("bob")
    headers = {"Idempotency-Key": "invite-bob-1"}
    first = alice.client.post("/v1/contacts", json={"handle": "bob"}, headers=headers)
    assert first.status_code == 201
    state = db_state()

    again = alice.client.post("/v1/contacts", json={"handle": "bob"}, headers=headers)

    assert (again.status_code, again.json()) == (201, first.json())
    assert again.headers["Idempotent-Replayed"] == "true"
    assert db_state() == state
    reused = alice.client.post("/v1/contacts", json={"handle": "carol"}, headers=headers)
    assert (reused.status_code, reused.json()["type"]) == (422, PROBLEM + "idempotency_key_reused")
    # The same key for accepting one member then another is a different request.
    accept = bob.client.post(f"/v1/contacts/{alice.user_id}/accept", headers={"Idempotency-Key": "k"})
    assert accept.status_code == 200
    other = bob.client.post(f"/v1/contacts/{bob.user_id}/accept", headers={"Idempotency-Key": "k"})
    assert other.status_code == 422


@pytest.mark.parametrize("path", ["/v1/contacts", "/v1/contacts/search?q=a"])
def test_contacts_need_a_token(api, path):
    with api.client() as anon:
        assert anon.get(path).status_code == 401
