"""Copies against real Postgres: who sees which, the owner's and holder's changes, and what the database refuses."""

from __future__ import annotations

import psycopg
import pytest

from covr_core.catalog import copies
from covr_core.catalog.books import create_book_from_identification
from covr_core.contact import links
from covr_core.exchange import circulation
from covr_core.shared.errors import InvalidInput, InvalidTransition, NotFound


@pytest.fixture
def member(conn):
    def make(handle: str) -> str:
        row = conn.execute(
            "insert into contact.user (handle, display_name) values (%s, %s) returning user_id",
            (handle, handle.title()),
        ).fetchone()
        conn.commit()
        return str(row["user_id"])

    return make


@pytest.fixture
def book(conn):
    def make(title: str = "The Quiet Orchard", isbn13: str | None = None) -> str:
        row = conn.execute(
            "insert into catalog.book (title, authors, isbn13) values (%s, %s, %s) returning book_id",
            (title, ["Maria Lindqvist"], isbn13),
        ).fetchone()
        conn.commit()
        return str(row["book_id"])

    return make


def befriend(conn, a: str, b: str) -> None:
    handle = conn.execute("select handle from contact.user where user_id = %s", (b,)).fetchone()["handle"]
    links.invite(conn, user_id=a, handle=handle)
    links.accept(conn, user_id=b, other_id=a)


def copy_rows(conn):
    return conn.execute(
        "select copy_id::text, status, notes, tags, owner_id::text, current_holder_id::text, updated_at "
        "from catalog.copy order by copy_id"
    ).fetchall()


def set_status(conn, copy_id: str, status: str, holder: str | None = None) -> None:
    # The exchange's moves, done in SQL here: this module only reads them.
    conn.execute(
        "update catalog.copy set status = %s, current_holder_id = coalesce(%s::uuid, current_holder_id) "
        "where copy_id = %s",
        (status, holder, copy_id),
    )
    conn.commit()


def test_create_copy_is_owned_and_held_by_its_owner(conn, member, book):
    alice = member("alice")
    copy_id = copies.create_copy(conn, book_id=book(), owner_id=alice)

    seen = copies.view_copy(conn, viewer_id=alice, copy_id=copy_id)

    assert seen["owner"]["user_id"] == seen["holder"]["user_id"] == alice
    assert (seen["status"], seen["tags"], seen["images"]) == ("available", [], [])
    assert seen["book"]["title"] == "The Quiet Orchard"


def test_a_member_sees_own_held_and_contacts_copies_and_nothing_else(conn, member, book):
    me, friend, stranger, lender = member("me"), member("friend"), member("stranger"), member("lender")
    b = book()
    mine = copies.create_copy(conn, book_id=b, owner_id=me)
    friends = copies.create_copy(conn, book_id=b, owner_id=friend)
    strangers = copies.create_copy(conn, book_id=b, owner_id=stranger)
    borrowed = copies.create_copy(conn, book_id=b, owner_id=lender, holder_id=me)
    lent_out = copies.create_copy(conn, book_id=b, owner_id=me, holder_id=stranger)
    friends_withdrawn = copies.create_copy(conn, book_id=b, owner_id=friend)
    circulation.withdraw(conn, user_id=friend, copy_id=friends_withdrawn)
    befriend(conn, me, friend)

    page, count = copies.list_copies(conn, viewer_id=me)

    assert {c["copy_id"] for c in page} == {mine, friends, borrowed, lent_out} and count == 4
    for invisible in (strangers, friends_withdrawn, "00000000-0000-0000-0000-000000000000", "not-a-uuid"):
        with pytest.raises(NotFound) as err:
            copies.view_copy(conn, viewer_id=me, copy_id=invisible)
        assert str(err.value) == f"copy {invisible} not found"
    # The friend's own view still has the withdrawn copy.
    assert copies.view_copy(conn, viewer_id=friend, copy_id=friends_withdrawn)["status"] == "withdrawn"


def test_a_blocked_member_stops_seeing_your_copies(conn, member, book):
    alice, bob = member("alice"), member("bob")
    copy_id = copies.create_copy(conn, book_id=book(), owner_id=alice)
    befriend(conn, alice, bob)
    assert copies.view_copy(conn, viewer_id=bob, copy_id=copy_id)

    links.block(conn, user_id=alice, other_id=bob)

    with pytest.raises(NotFound):
        copies.view_copy(conn, viewer_id=bob, copy_id=copy_id)
    assert copies.list_copies(conn, viewer_id=bob) == ([], 0)


def test_list_pages_newest_first_and_filters_by_status_holder_and_owner(conn, member, book):
    me, friend = member("me"), member("friend")
    befriend(conn, me, friend)
    b = book()
    made = [copies.create_copy(conn, book_id=b, owner_id=me) for _ in range(3)]
    theirs = copies.create_copy(conn, book_id=b, owner_id=friend)
    set_status(conn, made[0], "unavailable")

    page, count = copies.list_copies(conn, viewer_id=me, limit=2)
    assert count == 4 and [c["copy_id"] for c in page] == [theirs, made[2]]
    page, _ = copies.list_copies(conn, viewer_id=me, limit=2, offset=2)
    assert [c["copy_id"] for c in page] == [made[1], made[0]]

    assert [c["copy_id"] for c in copies.list_copies(conn, viewer_id=me, status="unavailable")[0]] == [made[0]]
    assert [c["copy_id"] for c in copies.list_copies(conn, viewer_id=me, holder_id=friend)[0]] == [theirs]
    assert copies.list_copies(conn, viewer_id=me, owner_id=me)[1] == 3
    for bad in ({"status": "stolen"}, {"holder_id": "bob"}, {"limit": 0}, {"limit": 101}, {"offset": -1}):
        with pytest.raises(InvalidInput):
            copies.list_copies(conn, viewer_id=me, **bad)


def test_the_owner_sets_notes_tags_and_availability(conn, member, book):
    alice = member("alice")
    copy_id = copies.create_copy(conn, book_id=book(), owner_id=alice)

    changed = copies.update_copy(conn, user_id=alice, copy_id=copy_id, notes="  Signed by the author ",
                                 tags=["Poetry", " first  edition", "poetry", ""], availability="unavailable")

    assert (changed["notes"], changed["tags"], changed["status"]) == (
        "Signed by the author", ["Poetry", "first edition"], "unavailable")
    back = copies.update_copy(conn, user_id=alice, copy_id=copy_id, availability="available", notes=None)
    assert (back["notes"], back["tags"], back["status"]) == (None, ["Poetry", "first edition"], "available")


def test_view_lists_images_with_thumbnail_urls(conn, member, book):
    alice = member("alice")
    copy_id = copies.create_copy(conn, book_id=book(), owner_id=alice)
    conn.execute(
        """
        insert into media.image (object_key, uploader_id, status, sha256, phash, byte_size, format, width, height,
                                 copy_id, thumbnail_key)
        values ('uploads/u/a.jpg', %s, 'accepted', repeat('a', 64), 1, 10, 'jpeg', 200, 300, %s, 'derived/t/a.jpg')
        """,
        (alice, copy_id),
    )
    conn.commit()

    seen = copies.view_copy(conn, viewer_id=alice, copy_id=copy_id,
                            thumbnail_url=lambda image: f"https://img/{image['thumbnail_key']}")

    assert [(i["kind"], i["width"], i["thumbnail_url"]) for i in seen["images"]] == [
        ("cover_front", 200, "https://img/derived/t/a.jpg")]
    image_id = seen["images"][0]["image_id"]
    assert copies.thumbnail_key(conn, viewer_id=alice, copy_id=copy_id, image_id=image_id) == "derived/t/a.jpg"
    stranger = member("stranger")
    with pytest.raises(NotFound):
        copies.thumbnail_key(conn, viewer_id=stranger, copy_id=copy_id, image_id=image_id)


def test_withdraw_and_lost(conn, member, book):
    alice, bob = member("alice"), member("bob")
    b = book()
    withdrawn = copies.create_copy(conn, book_id=b, owner_id=alice)
    assert circulation.withdraw(conn, user_id=alice, copy_id=withdrawn)["status"] == "withdrawn"
    # A withdrawn copy can still turn out lost.
    assert circulation.mark_lost(conn, user_id=alice, copy_id=withdrawn)["status"] == "lost"
    # The holder of a borrowed copy may mark it lost.
    lent = copies.create_copy(conn, book_id=b, owner_id=alice)
    set_status(conn, lent, "on_loan", holder=bob)
    assert circulation.mark_lost(conn, user_id=bob, copy_id=lent)["status"] == "lost"


@pytest.mark.parametrize(
    "case",
    [
        "contact_updates", "contact_withdraws", "contact_marks_lost", "holder_updates", "holder_withdraws",
        "stranger_updates", "stranger_marks_lost", "missing_updates",
        "availability_on_loan", "withdraw_on_loan", "withdraw_requested", "withdraw_twice", "lost_twice",
        "withdraw_with_open_request", "availability_withdrawn",
        "bad_availability", "long_notes", "too_many_tags", "long_tag", "nothing_to_change",
    ],
)
def test_forbidden_changes_raise_and_change_nothing(conn, member, book, case):
    owner, friend, stranger = member("owner"), member("friend"), member("stranger")
    befriend(conn, owner, friend)
    copy_id = copies.create_copy(conn, book_id=book(), owner_id=owner)
    if case.startswith("holder_"):
        set_status(conn, copy_id, "on_loan", holder=friend)
    if case in ("availability_on_loan", "withdraw_on_loan"):
        set_status(conn, copy_id, "on_loan", holder=friend)
    if case == "withdraw_requested":
        set_status(conn, copy_id, "requested")
    if case in ("withdraw_twice", "availability_withdrawn"):
        circulation.withdraw(conn, user_id=owner, copy_id=copy_id)
    if case == "lost_twice":
        circulation.mark_lost(conn, user_id=owner, copy_id=copy_id)
    if case == "withdraw_with_open_request":
        conn.execute("insert into exchange.request (copy_id, requester_id, holder_id) values (%s, %s, %s)",
                     (copy_id, friend, owner))
        conn.commit()
    missing = "6f1c1f0e-9d7b-4a53-9a53-3c6f5f0f0f0f"
    attempts = {
        "contact_updates": (NotFound, lambda: copies.update_copy(conn, user_id=friend, copy_id=copy_id, notes="x")),
        "contact_withdraws": (NotFound, lambda: circulation.withdraw(conn, user_id=friend, copy_id=copy_id)),
        "contact_marks_lost": (NotFound, lambda: circulation.mark_lost(conn, user_id=friend, copy_id=copy_id)),
        "holder_updates": (NotFound, lambda: copies.update_copy(conn, user_id=friend, copy_id=copy_id,
                                                                availability="unavailable")),
        "holder_withdraws": (NotFound, lambda: circulation.withdraw(conn, user_id=friend, copy_id=copy_id)),
        "stranger_updates": (NotFound, lambda: copies.update_copy(conn, user_id=stranger, copy_id=copy_id,
                                                                  tags=["x"])),
        "stranger_marks_lost": (NotFound, lambda: circulation.mark_lost(conn, user_id=stranger, copy_id=copy_id)),
        "missing_updates": (NotFound, lambda: copies.update_copy(conn, user_id=owner, copy_id=missing, notes="x")),
        "availability_on_loan": (InvalidTransition, lambda: copies.update_copy(
            conn, user_id=owner, copy_id=copy_id, availability="unavailable")),
        "withdraw_on_loan": (InvalidTransition, lambda: circulation.withdraw(conn, user_id=owner, copy_id=copy_id)),
        "withdraw_requested": (InvalidTransition, lambda: circulation.withdraw(conn, user_id=owner,
                                                                               copy_id=copy_id)),
        "withdraw_twice": (InvalidTransition, lambda: circulation.withdraw(conn, user_id=owner, copy_id=copy_id)),
        "lost_twice": (InvalidTransition, lambda: circulation.mark_lost(conn, user_id=owner, copy_id=copy_id)),
        "withdraw_with_open_request": (InvalidTransition, lambda: circulation.withdraw(conn, user_id=owner,
                                                                                       copy_id=copy_id)),
        "availability_withdrawn": (InvalidTransition, lambda: copies.update_copy(
            conn, user_id=owner, copy_id=copy_id, availability="available")),
        "bad_availability": (InvalidInput, lambda: copies.update_copy(conn, user_id=owner, copy_id=copy_id,
                                                                      availability="lent")),
        "long_notes": (InvalidInput, lambda: copies.update_copy(conn, user_id=owner, copy_id=copy_id,
                                                                notes="x" * 2001)),
        "too_many_tags": (InvalidInput, lambda: copies.update_copy(conn, user_id=owner, copy_id=copy_id,
                                                                   tags=[f"t{i}" for i in range(51)])),
        "long_tag": (InvalidInput, lambda: copies.update_copy(conn, user_id=owner, copy_id=copy_id,
                                                              tags=["x" * 65])),
        "nothing_to_change": (InvalidInput, lambda: copies.update_copy(conn, user_id=owner, copy_id=copy_id)),
    }
    error, attempt = attempts[case]
    before = copy_rows(conn)

    with pytest.raises(error) as raised:
        attempt()

    assert copy_rows(conn) == before
    if error is NotFound:
        target = missing if case == "missing_updates" else copy_id
        assert str(raised.value) == f"copy {target} not found"


def test_the_database_refuses_what_the_rules_forbid(conn, member, book):
    alice = member("alice")
    b = book()
    lost = copies.create_copy(conn, book_id=b, owner_id=alice)
    circulation.mark_lost(conn, user_id=alice, copy_id=lost)
    withdrawn = copies.create_copy(conn, book_id=b, owner_id=alice)
    circulation.withdraw(conn, user_id=alice, copy_id=withdrawn)
    fresh = copies.create_copy(conn, book_id=b, owner_id=alice)
    conn.commit()

    refused = [
        ("update catalog.copy set status = 'available' where copy_id = %s", (lost,)),
        ("update catalog.copy set status = 'available' where copy_id = %s", (withdrawn,)),
        ("update catalog.copy set status = 'borrowed' where copy_id = %s", (fresh,)),
        ("update catalog.copy set tags = array[repeat('x', 65)] where copy_id = %s", (fresh,)),
        ("update catalog.copy set tags = array[' padded'] where copy_id = %s", (fresh,)),
        ("update catalog.copy set notes = repeat('x', 2001) where copy_id = %s", (fresh,)),
    ]
    before = copy_rows(conn)
    for sql, params in refused:
        with pytest.raises(psycopg.errors.IntegrityError):
            with conn.transaction():
                conn.execute(sql, params)
    assert copy_rows(conn) == before


def test_create_book_from_identification_trusts_providers_and_reviews_ocr(conn):
    isbn = "9780306406157"
    provider = create_book_from_identification(conn, {
        "isbn13": isbn, "title": "ocr words",
        "evidence": {"metadata": {"provider": "openlibrary", "title": "Rivers of Salt", "authors": ["T. Ferreira"],
                                  "published_year": 2003}},
    })
    again = create_book_from_identification(conn, {"isbn13": isbn, "title": "something else", "evidence": {}})
    ocr = create_book_from_identification(conn, {"isbn13": None, "title": "A Grammar of Stars", "evidence": {}})

    assert again == provider
    rows = {r["book_id"]: r for r in conn.execute(
        "select book_id::text, title, authors, metadata_source, needs_review from catalog.book").fetchall()}
    assert (rows[provider]["title"], rows[provider]["metadata_source"], rows[provider]["needs_review"]) == (
        "Rivers of Salt", "openlibrary", False)
    assert (rows[ocr]["title"], rows[ocr]["metadata_source"], rows[ocr]["needs_review"]) == (
        "A Grammar of Stars", "ocr", True)
