"""The search-sync consumer on real Postgres: hand-overs, edits, withdrawals, renames, replays, the first build."""

from __future__ import annotations

import threading
import time

import pytest

from covr_core.catalog import copies as catalog_copies
from covr_core.exchange import circulation, handovers, requests
from covr_core.search import sync
from covr_core.search.embedded import PostgresSearch
from covr_core.search.service import search_copies
from tests.core.search_support import befriend, book, connector, copy, titles, user


@pytest.fixture
def world(conn, db_url):
    conn.autocommit = True
    alice, bob = user(conn, "alice", "Alice Liddell"), user(conn, "bob", "Bob Stone")
    befriend(conn, alice, bob)
    dune = book(conn, "Dune", ["Frank Herbert"], year=1965, tags=["sci-fi"], isbn13="9780441013593")
    the_copy = copy(conn, dune, alice, grade=8)
    connect = connector(db_url)
    backend = PostgresSearch(connect)
    yield {"conn": conn, "connect": connect, "backend": backend, "alice": alice, "bob": bob, "book": dune,
           "copy": the_copy}
    connect.pool.close()


def _round(w):
    return sync.run_round(w["connect"], w["backend"])


def _doc(w):
    [doc] = w["backend"].documents([w["copy"]]) or [None]
    return doc


def test_the_first_round_builds_the_index_then_follows_events(world):
    first = _round(world)
    assert first.rebuilt == 1 and _doc(world)["current_holder_name"] == "Alice Liddell"
    assert _round(world).rebuilt is None


def test_sync_after_a_hand_over_moves_the_holder(world):
    _round(world)
    w, conn = world, world["conn"]
    request = requests.create(conn, requester_id=w["bob"], copy_id=w["copy"])
    handover_id = requests.accept(conn, user_id=w["alice"], request_id=request.request_id).handover_id
    _round(w)
    assert _doc(w)["status"] == "requested"
    handovers.complete(conn, user_id=w["bob"], handover_id=handover_id, condition_rating=6)
    report = _round(w)
    assert report.events >= 1 and report.upserted == 1
    doc = _doc(w)
    assert (doc["current_holder_id"], doc["current_holder_name"], doc["status"], doc["condition_grade"]) == (
        w["bob"], "Bob Stone", "on_loan", 6)
    hit = search_copies(conn, w["backend"], viewer_id=w["bob"], q="dune", filter=f"current_holder_id = {w['bob']}")
    assert [h["copy_id"] for h in hit.hits] == [w["copy"]]


def test_copy_edits_withdrawals_and_replays(world):
    w, conn = world, world["conn"]
    _round(w)
    catalog_copies.update_copy(conn, user_id=w["alice"], copy_id=w["copy"], notes="Signed by the author",
                               tags=["signed"])
    _round(w)
    assert _doc(w)["notes"] == "Signed by the author" and "signed" in _doc(w)["tags"]
    assert titles(search_copies(conn, w["backend"], viewer_id=w["alice"], q="signed author")) == ["Dune"]
    assert titles(search_copies(conn, w["backend"], viewer_id=w["alice"], filter="tags = Signed")) == ["Dune"]
    circulation.withdraw(conn, user_id=w["alice"], copy_id=w["copy"])
    assert _round(w).deleted == 1 and _doc(w) is None
    # Replaying every event from the start leaves the same index: documents are rebuilt from the model.
    conn.execute("update outbox.consumer set last_xact_id = '0', last_event_id = 0 where name = %s", (sync.CONSUMER,))
    replay = _round(w)
    assert replay.events == 2 and _doc(w) is None and w["backend"].count() == 0


def test_a_lost_copy_stays_for_its_owner_only(world):
    w, conn = world, world["conn"]
    _round(w)
    circulation.mark_lost(conn, user_id=w["alice"], copy_id=w["copy"])
    _round(w)
    assert _doc(w)["status"] == "lost"
    assert search_copies(conn, w["backend"], viewer_id=w["alice"], q="dune").total == 1
    assert search_copies(conn, w["backend"], viewer_id=w["bob"], q="dune").total == 0


def test_book_edits_and_holder_renames_reach_the_documents(world, tmp_path):
    from covr_core.catalog.books import import_books, read_catalog_file
    from covr_core.shared.events import MemberRenamed
    from covr_core.shared.outbox import append_event

    w, conn = world, world["conn"]
    _round(w)
    path = tmp_path / "books.csv"
    path.write_text("isbn13,title,authors\n9780441013593,Dune (40th anniversary),Frank Herbert\n")
    assert import_books(conn, read_catalog_file(path)).updated == 1
    with conn.transaction():  # what a rename announces (accounts.claim emits it when a display name changes)
        conn.execute("update contact.user set display_name = 'Alice Pleasance' where user_id = %s", (w["alice"],))
        append_event(conn, MemberRenamed(user_id=w["alice"], display_name="Alice Pleasance"))
    _round(w)
    doc = _doc(w)
    assert (doc["title"], doc["current_holder_name"]) == ("Dune (40th anniversary)", "Alice Pleasance")
    assert titles(search_copies(conn, w["backend"], viewer_id=w["alice"], q="anniversary")) == [
        "Dune (40th anniversary)"]


def test_updated_at_really_moves(world):
    w, conn = world, world["conn"]
    before = conn.execute("select updated_at from catalog.copy where copy_id = %s", (w["copy"],)).fetchone()
    conn.execute("update catalog.copy set condition_grade = 3 where copy_id = %s", (w["copy"],))
    after = conn.execute("select updated_at from catalog.copy where copy_id = %s", (w["copy"],)).fetchone()
    assert after["updated_at"] > before["updated_at"]
    conn.execute("update catalog.book set language = 'en' where book_id = %s", (w["book"],))
    model = conn.execute("select updated_at from read_model.copy_search_document where copy_id = %s",
                         (w["copy"],)).fetchone()
    assert model["updated_at"] > after["updated_at"]


def test_the_worker_makes_a_commit_searchable_within_seconds(world):
    w, conn = world, world["conn"]
    stop = threading.Event()
    worker = threading.Thread(target=sync.run, args=(w["connect"], w["backend"]),
                              kwargs={"interval_s": 0.2, "stop": stop}, daemon=True)
    worker.start()
    try:
        catalog_copies.update_copy(conn, user_id=w["alice"], copy_id=w["copy"], notes="coffee stain on page 12")
        committed = time.monotonic()
        while time.monotonic() - committed < 30:
            if search_copies(conn, w["backend"], viewer_id=w["alice"], q="coffee").total:
                break
            time.sleep(0.1)
        assert time.monotonic() - committed < 30
    finally:
        stop.set()
        worker.join(10)
