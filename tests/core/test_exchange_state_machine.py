"""The database refuses request, hand-over and suspected-exchange transitions that skip a step, whoever writes SQL."""

from __future__ import annotations

import psycopg
import pytest


def _user(conn, handle):
    return str(conn.execute("insert into contact.user (handle, display_name) values (%s, %s) returning user_id",
                            (handle, handle)).fetchone()["user_id"])


@pytest.fixture
def world(conn):
    alice, bob, carol = _user(conn, "alice"), _user(conn, "bob"), _user(conn, "carol")
    book = conn.execute("insert into catalog.book (title) values ('Physics') returning book_id").fetchone()["book_id"]
    copy = str(conn.execute(
        "insert into catalog.copy (book_id, owner_id, current_holder_id) values (%s, %s, %s) returning copy_id",
        (book, alice, alice)).fetchone()["copy_id"])
    conn.commit()
    return {"alice": alice, "bob": bob, "carol": carol, "copy": copy}


def _request(conn, w, requester="bob", status=None):
    request = str(conn.execute(
        "insert into exchange.request (copy_id, requester_id, holder_id) values (%s, %s, %s) returning request_id",
        (w["copy"], w[requester], w["alice"])).fetchone()["request_id"])
    for step in status or ():
        conn.execute("update exchange.request set status = %s where request_id = %s", (step, request))
    return request


def _handover(conn, w, request, to="bob"):
    return str(conn.execute(
        "insert into exchange.exchange (request_id, copy_id, from_user_id, to_user_id, kind, origin) "
        "values (%s, %s, %s, %s, 'borrow', 'request') returning exchange_id",
        (request, w["copy"], w["alice"], w[to])).fetchone()["exchange_id"])


def _refused(conn, sql, params, match):
    with pytest.raises(psycopg.errors.IntegrityError, match=match):
        conn.execute(sql, params)
    conn.rollback()


def test_a_request_is_born_pending(conn, world):
    _refused(conn, "insert into exchange.request (copy_id, requester_id, holder_id, status) values (%s, %s, %s, "
                   "'accepted')", (world["copy"], world["bob"], world["alice"]), "rows start as pending, not accepted")


@pytest.mark.parametrize("path, step", [
    ((), "completed"),                              # pending -> completed skips accepted and the hand-over
    (("declined",), "accepted"),                     # a declined request stays declined
    (("cancelled",), "pending"),
    (("accepted",), "pending"),
    (("accepted",), "declined"),
])
def test_request_steps_that_skip_or_leave_a_final_state_are_refused(conn, world, path, step):
    request = _request(conn, world, status=path)
    conn.commit()
    _refused(conn, "update exchange.request set status = %s where request_id = %s", (step, request),
             "is not an allowed transition")
    assert conn.execute("select status from exchange.request where request_id = %s",
                        (request,)).fetchone()["status"] == (path[-1] if path else "pending")


def test_a_requests_parties_and_kind_never_change(conn, world):
    request = _request(conn, world)
    conn.commit()
    _refused(conn, "update exchange.request set kind = 'keep' where request_id = %s", (request,),
             r"exchange.request.kind never changes")
    _refused(conn, "update exchange.request set requester_id = %s where request_id = %s", (world["carol"], request),
             r"requester_id never changes")


def test_request_kinds_are_borrow_or_keep(conn, world):
    _refused(conn, "insert into exchange.request (copy_id, requester_id, holder_id, kind) values (%s, %s, %s, "
                   "'exchange')", (world["copy"], world["bob"], world["alice"]), "request_kind_check")


def test_one_open_request_per_requester_and_one_accepted_per_copy(conn, world):
    _request(conn, world)
    conn.commit()
    _refused(conn, "insert into exchange.request (copy_id, requester_id, holder_id) values (%s, %s, %s)",
             (world["copy"], world["bob"], world["alice"]), "request_one_open_per_requester_idx")
    conn.execute("update exchange.request set status = 'cancelled' where requester_id = %s", (world["bob"],))
    first = _request(conn, world, "bob")  # a closed request does not count: bob may ask again
    second = _request(conn, world, "carol")
    conn.execute("update exchange.request set status = 'accepted' where request_id = %s", (first,))
    with pytest.raises(psycopg.errors.UniqueViolation, match="request_one_accepted_per_copy_idx"):
        conn.execute("update exchange.request set status = 'accepted' where request_id = %s", (second,))


def test_a_handover_starts_only_from_an_accepted_matching_request(conn, world):
    pending = _request(conn, world)
    conn.commit()
    _refused(conn, "insert into exchange.exchange (request_id, copy_id, from_user_id, to_user_id, kind, origin) "
                   "values (%s, %s, %s, %s, 'borrow', 'request')",
             (pending, world["copy"], world["alice"], world["bob"]), "the request must be accepted")
    conn.execute("update exchange.request set status = 'accepted' where request_id = %s", (pending,))
    conn.commit()
    _refused(conn, "insert into exchange.exchange (request_id, copy_id, from_user_id, to_user_id, kind, origin) "
                   "values (%s, %s, %s, %s, 'keep', 'request')",
             (pending, world["copy"], world["alice"], world["bob"]), "the request must be accepted and match it")
    _refused(conn, "insert into exchange.exchange (request_id, copy_id, from_user_id, to_user_id, kind, origin, "
                   "status, completed_at) values (%s, %s, %s, %s, 'borrow', 'request', 'completed', now())",
             (pending, world["copy"], world["alice"], world["bob"]), "rows start as in_progress, not completed")


def test_at_most_one_handover_in_progress_per_copy(conn, world):
    request = _request(conn, world, status=["accepted"])
    _handover(conn, world, request)
    conn.commit()
    conn.execute("update catalog.copy set current_holder_id = %s where copy_id = %s", (world["bob"], world["copy"]))
    conn.commit()
    _refused(conn, "insert into exchange.exchange (copy_id, from_user_id, to_user_id, kind, origin) "
                   "values (%s, %s, %s, 'return', 'return')",
             (world["copy"], world["bob"], world["alice"]), "exchange_one_in_progress_per_copy_idx")


def test_a_handover_completes_only_once_the_copy_moved_and_never_reopens(conn, world):
    request = _request(conn, world, status=["accepted"])
    handover = _handover(conn, world, request)
    conn.commit()
    _refused(conn, "update exchange.exchange set status = 'completed', completed_at = now() where exchange_id = %s",
             (handover,), "completed before copy .* moved")
    _refused(conn, "update exchange.request set status = 'completed' where request_id = %s", (request,),
             "completed without its hand-over being completed")
    _refused(conn, "update exchange.request set status = 'cancelled' where request_id = %s", (request,),
             "cancelled while its hand-over is still in progress")

    conn.execute("update catalog.copy set current_holder_id = %s where copy_id = %s", (world["bob"], world["copy"]))
    conn.execute("update exchange.exchange set status = 'completed', completed_at = now() where exchange_id = %s",
                 (handover,))
    conn.execute("update exchange.request set status = 'completed' where request_id = %s", (request,))
    conn.commit()
    for status in ("in_progress", "cancelled"):
        _refused(conn, "update exchange.exchange set status = %s, completed_at = null where exchange_id = %s",
                 (status, handover), "is not an allowed transition")
    for status in ("accepted", "cancelled", "pending"):
        _refused(conn, "update exchange.request set status = %s where request_id = %s", (status, request),
                 "is not an allowed transition")
    _refused(conn, "update exchange.exchange set to_user_id = %s where exchange_id = %s", (world["carol"], handover),
             "to_user_id never changes")


def test_a_return_goes_from_the_holder_to_the_owner(conn, world):
    conn.execute("update catalog.copy set current_holder_id = %s, status = 'on_loan' where copy_id = %s",
                 (world["bob"], world["copy"]))
    conn.commit()
    _refused(conn, "insert into exchange.exchange (copy_id, from_user_id, to_user_id, kind, origin) "
                   "values (%s, %s, %s, 'return', 'return')",
             (world["copy"], world["bob"], world["carol"]), "it goes from its holder to its owner")
    _refused(conn, "insert into exchange.exchange (copy_id, from_user_id, to_user_id, kind, origin) "
                   "values (%s, %s, %s, 'keep', 'return')",
             (world["copy"], world["bob"], world["alice"]), "exchange_origin_return_check")


def test_suspected_exchanges_are_confirmed_only_by_a_completed_handover(conn, world):
    image = conn.execute(
        "insert into media.image (object_key, uploader_id, status, byte_size, sha256, phash, format) "
        "values ('uploads/b/1.jpg', %s, 'accepted', 10, repeat('a', 64), 1, 'jpeg') returning image_id",
        (world["bob"],)).fetchone()["image_id"]
    suspected = conn.execute(
        "insert into exchange.suspected_exchange (image_id, copy_id, uploader_id, holder_id) values (%s, %s, %s, %s) "
        "returning suspected_exchange_id", (image, world["copy"], world["bob"], world["alice"])
    ).fetchone()["suspected_exchange_id"]
    conn.commit()
    _refused(conn, "update exchange.suspected_exchange set status = 'confirmed', decided_at = now() "
                   "where suspected_exchange_id = %s", (suspected,), "confirmed without a completed hand-over")
    _refused(conn, "insert into exchange.exchange (copy_id, from_user_id, to_user_id, kind, origin) "
                   "values (%s, %s, %s, 'keep', 'suspected')",
             (world["copy"], world["carol"], world["bob"]), "none is pending")
    conn.execute("update exchange.suspected_exchange set status = 'dismissed', decided_at = now() "
                 "where suspected_exchange_id = %s", (suspected,))
    conn.commit()
    _refused(conn, "update exchange.suspected_exchange set status = 'pending', decided_at = null "
                   "where suspected_exchange_id = %s", (suspected,), "is not an allowed transition")


def test_condition_is_rated_from_0_to_10(conn, world):
    conn.execute("update catalog.copy set condition_grade = 0 where copy_id = %s", (world["copy"],))
    _refused(conn, "update catalog.copy set condition_grade = 11 where copy_id = %s", (world["copy"],),
             "copy_condition_grade_check")
    request = _request(conn, world, status=["accepted"])
    handover = _handover(conn, world, request)
    conn.execute("insert into exchange.degradation_rating (exchange_id, copy_id, rated_by, rating) "
                 "values (%s, %s, %s, 0)", (handover, world["copy"], world["bob"]))
    with pytest.raises(psycopg.errors.CheckViolation, match="degradation_rating_rating_check"):
        conn.execute("insert into exchange.degradation_rating (exchange_id, copy_id, rated_by, rating) "
                     "values (%s, %s, %s, 11)", (handover, world["copy"], world["alice"]))
