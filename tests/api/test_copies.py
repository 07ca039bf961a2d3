"""Copies over HTTP: what each member sees, the owner's changes, withdraw and lost, and 404s that reveal nothing."""

from __future__ import annotations

import psycopg
import pytest
from psycopg.rows import dict_row

from covr_core.catalog.copies import create_copy
from covr_core.media.storage import LocalObjectStore

PROBLEM = "https://covr.dev/problems/"


@pytest.fixture
def new_copy(api):
    """`new_copy(owner, holder=None, title=...)`: a copy of a new book, as ingest would have made it."""

    def make(owner, holder=None, title="The Quiet Orchard") -> str:
        with psycopg.connect(api.db_url, row_factory=dict_row, autocommit=True) as conn:
            book = conn.execute("insert into catalog.book (title, authors) values (%s, %s) returning book_id",
                                (title, ["Maria Lindqvist"])).fetchone()["book_id"]
            copy_id = create_copy(conn, book_id=str(book), owner_id=owner.user_id,
                                  holder_id=holder.user_id if holder else None)
            if holder is not None:
                conn.execute("update catalog.copy set status = 'on_loan' where copy_id = %s", (copy_id,))
        return copy_id

    return make


def test_list_mine_and_my_contacts_with_filters_and_paging(api, member, befriend, new_copy):
    me, friend, stranger = member("me"), member("friend"), member("stranger")
    befriend(me, friend)
    mine = [new_copy(me, title=f"Mine {i}") for i in range(3)]
    theirs = new_copy(friend)
    new_copy(stranger)

    page = me.client.get("/v1/copies", params={"limit": 2}).json()
    assert page["count"] == 4 and [c["copy_id"] for c in page["data"]] == [theirs, mine[2]]
    rest = me.client.get("/v1/copies", params={"limit": 2, "offset": 2}).json()
    assert [c["copy_id"] for c in rest["data"]] == [mine[1], mine[0]]
    assert [c["copy_id"] for c in me.client.get("/v1/copies", params={"holder": friend.user_id}).json()["data"]] == [
        theirs]
    assert me.client.get("/v1/copies", params={"holder": "me"}).json()["count"] == 3
    me.client.patch(f"/v1/copies/{mine[0]}", json={"availability": "unavailable"})
    filtered = me.client.get("/v1/copies", params={"status": "unavailable"}).json()
    assert [c["copy_id"] for c in filtered["data"]] == [mine[0]]
    first = page["data"][0]
    assert first["book"]["title"] == "The Quiet Orchard"
    assert (first["owner"]["handle"], first["holder"]["handle"]) == ("friend", "friend")
    assert stranger.client.get("/v1/copies").json()["count"] == 1


def test_view_shows_book_people_condition_and_thumbnail_urls(api, member, befriend, new_copy):
    owner, friend = member("owner"), member("friend")
    befriend(owner, friend)
    copy_id = new_copy(owner)
    store = LocalObjectStore(api.settings.objects_dir)
    store.put("derived/thumbnail/u/one.jpg", b"\xff\xd8\xff thumbnail bytes")
    api.sql(
        """
        insert into media.image (object_key, uploader_id, status, sha256, phash, byte_size, format, width, height,
                                 copy_id, thumbnail_key)
        values ('uploads/u/one.jpg', %s, 'accepted', repeat('b', 64), 7, 10, 'jpeg', 200, 300, %s,
                'derived/thumbnail/u/one.jpg')
        """,
        (owner.user_id, copy_id),
    )
    api.sql("update catalog.copy set condition_grade = 8 where copy_id = %s", (copy_id,))

    seen = friend.client.get(f"/v1/copies/{copy_id}")

    assert seen.status_code == 200, seen.text
    body = seen.json()
    assert body["condition_grade"] == 8 and body["owner"]["user_id"] == owner.user_id
    assert body["holder"]["user_id"] == owner.user_id
    [image] = body["images"]
    assert image["width"] == 200
    thumb = friend.client.get(image["thumbnail_url"])
    assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"
    assert thumb.content == b"\xff\xd8\xff thumbnail bytes"
    stranger = member("stranger")
    hidden = stranger.client.get(image["thumbnail_url"])
    assert (hidden.status_code, hidden.json()["type"]) == (404, PROBLEM + "not_found")


def test_the_owner_sets_notes_tags_and_availability(api, member, new_copy):
    owner = member("owner")
    copy_id = new_copy(owner)

    r = owner.client.patch(f"/v1/copies/{copy_id}", json={"notes": "Signed", "tags": ["poetry", "Poetry", "gift"],
                                                           "availability": "unavailable"})

    assert r.status_code == 200, r.text
    assert (r.json()["notes"], r.json()["tags"], r.json()["status"]) == ("Signed", ["poetry", "gift"], "unavailable")
    r = owner.client.patch(f"/v1/copies/{copy_id}", json={"notes": None})
    assert (r.json()["notes"], r.json()["tags"], r.json()["status"]) == (None, ["poetry", "gift"], "unavailable")
    r = owner.client.patch(f"/v1/copies/{copy_id}", json={"availability": "available", "tags": []})
    assert (r.json()["tags"], r.json()["status"]) == ([], "available")


def test_withdraw_and_mark_lost(api, member, new_copy):
    owner, borrower = member("owner"), member("borrower")
    copy_id = new_copy(owner)
    r = owner.client.post(f"/v1/copies/{copy_id}/withdraw")
    assert (r.status_code, r.json()["status"]) == (200, "withdrawn")
    r = owner.client.post(f"/v1/copies/{copy_id}/lost")
    assert (r.status_code, r.json()["status"]) == (200, "lost")
    lent = new_copy(owner, holder=borrower)
    r = borrower.client.post(f"/v1/copies/{lent}/lost", headers={"Idempotency-Key": "lost-1"})
    assert (r.status_code, r.json()["status"]) == (200, "lost")
    replay = borrower.client.post(f"/v1/copies/{lent}/lost", headers={"Idempotency-Key": "lost-1"})
    assert (replay.status_code, replay.json()) == (200, r.json())
    assert replay.headers["Idempotent-Replayed"] == "true"


def test_invisible_and_not_yours_answer_exactly_like_missing(api, member, befriend, new_copy, db_state):
    owner, friend, stranger = member("owner"), member("friend"), member("stranger")
    befriend(owner, friend)
    copy_id = new_copy(owner)
    missing = "7d0b8b8e-2a41-4c55-8f0e-9f4a3b2c1d0e"

    def answer(who, method, url, **kw):
        r = who.client.request(method, url, **kw)
        body = r.json()
        return r.status_code, body["type"], body["detail"].replace(copy_id, "ID").replace(missing, "ID")

    before = db_state()
    expected = answer(owner, "GET", f"/v1/copies/{missing}")
    assert expected[:2] == (404, PROBLEM + "not_found")
    for who, method, url, kw in [
        (stranger, "GET", f"/v1/copies/{copy_id}", {}),
        (stranger, "PATCH", f"/v1/copies/{copy_id}", {"json": {"notes": "mine now"}}),
        (stranger, "POST", f"/v1/copies/{copy_id}/withdraw", {}),
        (stranger, "POST", f"/v1/copies/{copy_id}/lost", {}),
        # The friend sees the copy but may not change it: the same 404.
        (friend, "PATCH", f"/v1/copies/{copy_id}", {"json": {"availability": "unavailable"}}),
        (friend, "POST", f"/v1/copies/{copy_id}/withdraw", {}),
        (friend, "POST", f"/v1/copies/{copy_id}/lost", {}),
    ]:
        assert answer(who, method, url.replace(copy_id, missing), **kw) == expected, (who.handle, method, url)
        assert answer(who, method, url, **kw) == expected, (who.handle, method, url)
    assert db_state() == before


def test_wrong_state_is_409_and_bad_data_422_and_nothing_changes(api, member, new_copy, db_state):
    owner, borrower = member("owner"), member("borrower")
    lent = new_copy(owner, holder=borrower)
    gone = new_copy(owner)
    owner.client.post(f"/v1/copies/{gone}/withdraw")
    fresh = new_copy(owner)
    lost = new_copy(owner)
    assert owner.client.post(f"/v1/copies/{lost}/lost").status_code == 200
    before = db_state()
    for url, method, body, status, code in [
        (f"/v1/copies/{lent}", "PATCH", {"availability": "unavailable"}, 409, "invalid_transition"),
        (f"/v1/copies/{lent}/withdraw", "POST", None, 409, "invalid_transition"),
        (f"/v1/copies/{gone}/withdraw", "POST", None, 409, "invalid_transition"),
        (f"/v1/copies/{gone}", "PATCH", {"availability": "available"}, 409, "invalid_transition"),
        (f"/v1/copies/{fresh}", "PATCH", {"availability": "lent"}, 422, "invalid_request"),
        (f"/v1/copies/{fresh}", "PATCH", {"notes": "x" * 2001}, 422, "invalid_request"),
        (f"/v1/copies/{fresh}", "PATCH", {"tags": ["x" * 65]}, 422, "invalid_input"),
        (f"/v1/copies/{fresh}", "PATCH", {"status": "lost"}, 422, "invalid_request"),
        (f"/v1/copies/{fresh}", "PATCH", {}, 422, "invalid_input"),
        ("/v1/copies?status=stolen", "GET", None, 422, "invalid_request"),
        ("/v1/copies?holder=bob", "GET", None, 422, "invalid_input"),
        ("/v1/copies?limit=1000", "GET", None, 422, "invalid_request"),
        (f"/v1/copies/{lost}/lost", "POST", None, 409, "invalid_transition"),
        (f"/v1/copies/{lost}", "PATCH", {"availability": "available"}, 409, "invalid_transition"),
    ]:
        r = owner.client.request(method, url, json=body)
        assert (r.status_code, r.json()["type"]) == (status, PROBLEM + code), (method, url, r.text)
    assert db_state() == before
