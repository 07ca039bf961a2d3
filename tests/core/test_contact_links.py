"""The contact graph against real Postgres: invite, accept, decline, remove, block, and what the database refuses."""

from __future__ import annotations

import threading

import psycopg
import pytest
from psycopg.rows import dict_row

from covr_core.contact import links
from covr_core.shared.errors import Conflict, InvalidInput, InvalidTransition, NotFound


@pytest.fixture
def members(conn):
    """`members("alice", "bob")`: user ids of new members, by handle."""

    def make(*handles: str) -> list[str]:
        ids = []
        for handle in handles:
            row = conn.execute(
                "insert into contact.user (handle, display_name) values (%s, %s) returning user_id",
                (handle, handle.replace("-", " ").title()),
            ).fetchone()
            ids.append(str(row["user_id"]))
        conn.commit()
        return ids

    return make


def rows(conn):
    return conn.execute("select user_id::text, contact_id::text, status from contact.link order by 1, 2").fetchall()


def test_invite_then_accept_makes_accepted_contacts_both_ways(conn, members):
    alice, bob = members("alice", "bob")

    sent = links.invite(conn, user_id=alice, handle="Bob")
    assert (sent["handle"], sent["status"], sent["direction"]) == ("bob", "pending", "outgoing")
    assert links.get_contact(conn, user_id=bob, other_id=alice)["direction"] == "incoming"
    assert not links.is_accepted_contact(conn, alice, bob)

    accepted = links.accept(conn, user_id=bob, other_id=alice)

    assert (accepted["status"], accepted["direction"]) == ("accepted", "incoming")
    assert accepted["accepted_at"] is not None
    assert links.is_accepted_contact(conn, alice, bob) and links.is_accepted_contact(conn, bob, alice)
    assert rows(conn) == [{"user_id": alice, "contact_id": bob, "status": "accepted"}]


def test_inviting_someone_who_invited_you_accepts_their_invitation(conn, members):
    alice, bob = members("alice", "bob")
    links.invite(conn, user_id=alice, handle="bob")

    back = links.invite(conn, user_id=bob, handle="alice")

    assert back["status"] == "accepted"
    assert rows(conn) == [{"user_id": alice, "contact_id": bob, "status": "accepted"}]


def test_decline_and_remove_delete_the_link_and_allow_a_new_invitation(conn, members):
    alice, bob, carol = members("alice", "bob", "carol")
    links.invite(conn, user_id=alice, handle="bob")
    links.decline(conn, user_id=bob, other_id=alice)
    assert rows(conn) == []

    links.invite(conn, user_id=alice, handle="bob")
    links.remove(conn, user_id=alice, other_id=bob)  # the inviter withdraws it
    assert rows(conn) == []

    links.invite(conn, user_id=carol, handle="alice")
    links.accept(conn, user_id=alice, other_id=carol)
    links.remove(conn, user_id=carol, other_id=alice)  # either side ends a contact
    assert rows(conn) == [] and not links.is_accepted_contact(conn, alice, carol)


@pytest.mark.parametrize(
    "setup, act, error",
    [
        ("none", lambda c, a, b: links.accept(c, user_id=b, other_id=a), NotFound),
        ("none", lambda c, a, b: links.decline(c, user_id=b, other_id=a), NotFound),
        ("none", lambda c, a, b: links.remove(c, user_id=b, other_id=a), NotFound),
        ("none", lambda c, a, b: links.invite(c, user_id=a, handle="nobody"), NotFound),
        ("none", lambda c, a, b: links.invite(c, user_id=a, handle="alice"), InvalidInput),
        ("none", lambda c, a, b: links.block(c, user_id=a, other_id=a), InvalidInput),
        ("none", lambda c, a, b: links.block(c, user_id=a, other_id="not-a-uuid"), NotFound),
        ("none", lambda c, a, b: links.accept(c, user_id=a, other_id="not-a-uuid"), NotFound),
        ("pending", lambda c, a, b: links.accept(c, user_id=a, other_id=b), InvalidTransition),
        ("pending", lambda c, a, b: links.decline(c, user_id=a, other_id=b), InvalidTransition),
        ("pending", lambda c, a, b: links.invite(c, user_id=a, handle="bob"), Conflict),
        ("accepted", lambda c, a, b: links.accept(c, user_id=b, other_id=a), InvalidTransition),
        ("accepted", lambda c, a, b: links.decline(c, user_id=b, other_id=a), InvalidTransition),
        ("accepted", lambda c, a, b: links.invite(c, user_id=b, handle="alice"), Conflict),
        ("a_blocks_b", lambda c, a, b: links.invite(c, user_id=b, handle="alice"), NotFound),
        ("a_blocks_b", lambda c, a, b: links.accept(c, user_id=b, other_id=a), NotFound),
        ("a_blocks_b", lambda c, a, b: links.remove(c, user_id=b, other_id=a), NotFound),
        ("a_blocks_b", lambda c, a, b: links.invite(c, user_id=a, handle="bob"), InvalidTransition),
        ("a_blocks_b", lambda c, a, b: links.block(c, user_id=a, other_id=b), InvalidTransition),
    ],
    ids=lambda v: v if isinstance(v, str) else getattr(v, "__name__", ""),
)
def test_forbidden_steps_raise_and_change_nothing(conn, members, setup, act, error):
    alice, bob = members("alice", "bob")
    if setup in ("pending", "accepted"):
        links.invite(conn, user_id=alice, handle="bob")
    if setup == "accepted":
        links.accept(conn, user_id=bob, other_id=alice)
    if setup == "a_blocks_b":
        links.block(conn, user_id=alice, other_id=bob)
    before = rows(conn)

    with pytest.raises(error):
        act(conn, alice, bob)

    assert rows(conn) == before


def test_a_block_hides_the_blocker_and_ends_the_contact(conn, members):
    alice, bob = members("alice", "bob")
    links.invite(conn, user_id=alice, handle="bob")
    links.accept(conn, user_id=bob, other_id=alice)

    blocked = links.block(conn, user_id=bob, other_id=alice)

    assert (blocked["status"], blocked["direction"]) == ("blocked", "outgoing")
    assert not links.is_accepted_contact(conn, alice, bob)
    assert links.list_contacts(conn, user_id=alice) == ([], 0)
    assert links.search_members(conn, user_id=alice, query="bo") == []
    with pytest.raises(NotFound) as unknown:
        links.invite(conn, user_id=alice, handle="nobody")
    with pytest.raises(NotFound) as blocker:
        links.invite(conn, user_id=alice, handle="bob")
    # The same words as for a handle nobody has, apart from the handle itself.
    assert str(blocker.value).replace("bob", "X") == str(unknown.value).replace("nobody", "X")
    # Bob still sees his block, and lifts it by removing it.
    assert [r["status"] for r in links.search_members(conn, user_id=bob, query="ali")] == ["blocked"]
    links.remove(conn, user_id=bob, other_id=alice)
    assert rows(conn) == []
    assert links.invite(conn, user_id=alice, handle="bob")["status"] == "pending"


def test_two_members_can_block_each_other_and_each_lifts_only_their_own(conn, members):
    alice, bob = members("alice", "bob")
    links.block(conn, user_id=alice, other_id=bob)
    # Bob learns nothing: his block succeeds as if there were none.
    assert links.block(conn, user_id=bob, other_id=alice)["status"] == "blocked"

    links.remove(conn, user_id=alice, other_id=bob)

    assert rows(conn) == [{"user_id": bob, "contact_id": alice, "status": "blocked"}]
    with pytest.raises(NotFound):
        links.invite(conn, user_id=alice, handle="bob")


def test_list_contacts_pages_and_filters(conn, members):
    me, *others = members("me", "ann", "ben", "cat", "dan", "eve")
    ann, ben, cat, dan, eve = others
    for handle in ("ann", "ben", "cat"):
        links.invite(conn, user_id=me, handle=handle)
    links.accept(conn, user_id=ann, other_id=me)
    links.invite(conn, user_id=dan, handle="me")
    links.block(conn, user_id=me, other_id=eve)

    page, count = links.list_contacts(conn, user_id=me, limit=2)
    assert count == 5 and [r["handle"] for r in page] == ["ann", "ben"]
    page, _ = links.list_contacts(conn, user_id=me, limit=2, offset=4)
    assert [r["handle"] for r in page] == ["eve"]

    assert [r["handle"] for r in links.list_contacts(conn, user_id=me, status="accepted")[0]] == ["ann"]
    pending, n = links.list_contacts(conn, user_id=me, status="pending")
    assert n == 3 and {(r["handle"], r["direction"]) for r in pending} == {
        ("ben", "outgoing"), ("cat", "outgoing"), ("dan", "incoming")}
    assert [r["handle"] for r in links.list_contacts(conn, user_id=me, direction="incoming")[0]] == ["dan"]
    assert [r["handle"] for r in links.list_contacts(conn, user_id=me, status="blocked")[0]] == ["eve"]
    # Eve does not see Me's block.
    assert links.list_contacts(conn, user_id=eve) == ([], 0)
    for bad in ({"status": "friends"}, {"direction": "up"}, {"limit": 0}, {"limit": 101}, {"offset": -1}):
        with pytest.raises(InvalidInput):
            links.list_contacts(conn, user_id=me, **bad)


def test_search_by_handle_or_display_name_prefix(conn, members):
    me, *_ = members("me", "maria-lindqvist", "marco", "tom", "lin_50")
    conn.execute("update contact.user set display_name = 'Tomas Ferreira' where handle = 'tom'")
    conn.commit()
    links.invite(conn, user_id=me, handle="marco")

    assert [r["handle"] for r in links.search_members(conn, user_id=me, query="MAR")] == ["marco", "maria-lindqvist"]
    assert [r["handle"] for r in links.search_members(conn, user_id=me, query="lind")] == ["maria-lindqvist"]
    assert [r["handle"] for r in links.search_members(conn, user_id=me, query="ferr")] == ["tom"]
    # LIKE wildcards in the query are literal characters.
    assert [r["handle"] for r in links.search_members(conn, user_id=me, query="lin_")] == ["lin_50"]
    assert links.search_members(conn, user_id=me, query="%") == []
    assert links.search_members(conn, user_id=me, query="me") == []  # never myself
    marco = links.search_members(conn, user_id=me, query="marco")[0]
    assert (marco["status"], marco["direction"]) == ("pending", "outgoing")
    assert links.search_members(conn, user_id=me, query="tom")[0]["status"] is None
    with pytest.raises(InvalidInput):
        links.search_members(conn, user_id=me, query="  ")


def test_the_database_refuses_steps_that_skip_the_state_machine(conn, members):
    alice, bob, carol = members("alice", "bob", "carol")
    links.invite(conn, user_id=alice, handle="bob")
    links.accept(conn, user_id=bob, other_id=alice)
    links.block(conn, user_id=alice, other_id=carol)

    refused = [
        # an accepted contact back to pending
        ("update contact.link set status = 'pending' where user_id = %s and contact_id = %s", (alice, bob)),
        # a block turned into a contact
        ("update contact.link set status = 'accepted' where user_id = %s and contact_id = %s", (alice, carol)),
        # the same pair twice, the other way round
        ("insert into contact.link (user_id, contact_id) values (%s, %s)", (bob, alice)),
        # an invitation across a block
        ("insert into contact.link (user_id, contact_id) values (%s, %s)", (carol, alice)),
        # a block while the pair's contact stands
        ("insert into contact.link (user_id, contact_id, status) values (%s, %s, 'blocked')", (bob, alice)),
        # moving a link to other members
        ("update contact.link set contact_id = %s where user_id = %s and contact_id = %s", (carol, alice, bob)),
    ]
    before = rows(conn)
    for sql, params in refused:
        with pytest.raises(psycopg.errors.IntegrityError):
            with conn.transaction():
                conn.execute(sql, params)
    assert rows(conn) == before


def test_concurrent_cross_invitations_make_one_contact(db_url, members):
    alice, bob = members("alice", "bob")
    barrier = threading.Barrier(2)
    results, errors = [], []

    def invite(me: str, handle: str) -> None:
        with psycopg.connect(db_url, row_factory=dict_row, autocommit=True) as c:
            barrier.wait()
            try:
                results.append(links.invite(c, user_id=me, handle=handle)["status"])
            except Exception as exc:  # noqa: BLE001 - collected and asserted on below
                errors.append(exc)

    threads = [threading.Thread(target=invite, args=a) for a in ((alice, "bob"), (bob, "alice"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert errors == []
    assert sorted(results) == ["accepted", "pending"]
    with psycopg.connect(db_url, row_factory=dict_row) as c:
        assert [r["status"] for r in rows(c)] == ["accepted"]
