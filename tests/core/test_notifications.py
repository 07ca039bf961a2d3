"""Notifications follow outbox events: who hears what, one inbox row per event and person, one mail each, ever."""

from __future__ import annotations

import threading
import uuid

import psycopg
import pytest
from psycopg.rows import dict_row

from covr_core.dedup.ingest import apply_outcome
from covr_core.dedup.rules import DedupEvidence, Outcome
from covr_core.notifications import deliveries, inbox
from covr_core.notifications.mail import SmtpMailer
from covr_core.notifications.rules import describe, notices_for, retry_delay_s
from covr_core.notifications.worker import WorkerConfig, run_round
from covr_core.platform import migrations
from covr_core.shared.consumer import consumer_state
from covr_core.shared.errors import NotFound
from covr_core.shared.events import ExchangeAccepted, ExchangeCompleted, ExchangeSuspected, RequestCreated
from covr_core.shared.outbox import append_event

A, B, C = (str(uuid.UUID(int=i)) for i in (1, 2, 3))


# --- Who hears about what (pure) -------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("event_type", "payload", "expected"),
    [
        ("RequestCreated", {"requester_id": A, "current_holder_id": B, "copy_id": C}, [(B, "request_created", A)]),
        ("ExchangeAccepted", {"from_user_id": B, "to_user_id": A, "copy_id": C}, [(A, "request_accepted", B)]),
        ("RequestDeclined", {"requester_id": A, "current_holder_id": B}, [(A, "request_declined", B)]),
        ("RequestDeclined", {"requester_id": A, "holder_id": B, "reason": "on holiday"},
         [(A, "request_declined", B)]),
        ("RequestCancelled", {"requester_id": A, "current_holder_id": B, "cancelled_by": A},
         [(B, "request_cancelled", A)]),
        # Either side may call off a hand-over in progress: the other one hears of it.
        ("RequestCancelled", {"requester_id": A, "current_holder_id": B, "cancelled_by": B},
         [(A, "request_cancelled", B)]),
        ("RequestCancelled", {"requester_id": A, "holder_id": B}, [(B, "request_cancelled", A)]),
        ("ExchangeCompleted", {"from_user_id": A, "to_user_id": B, "copy_id": C},
         [(A, "exchange_completed", B), (B, "exchange_completed", A)]),
        ("ExchangeSuspected", {"uploader_id": A, "holder_id": B, "copy_id": C}, [(B, "exchange_suspected", A)]),
        ("ReturnStarted", {"from_user_id": A, "to_user_id": B, "started_by": A}, [(B, "return_started", A)]),
        ("ReturnCancelled", {"from_user_id": A, "to_user_id": B, "cancelled_by": B}, [(A, "return_cancelled", B)]),
        # The exchange helper's decline when another request won: the requester hears, naming the holder.
        ("RequestDeclined", {"requester_id": A, "current_holder_id": B, "accepted_request_id": C},
         [(A, "request_declined", B)]),
        ("SuspectedExchangeDismissed", {"uploader_id": A, "holder_id": B, "dismissed_by": B},
         [(A, "suspected_exchange_dismissed", B)]),
        ("ImageUploaded", {"uploader_id": A}, []),
        ("DedupResolved", {"image_id": A}, []),
        ("SomethingNew", {"user_id": A}, []),
        ("RequestCreated", {"requester_id": A}, []),  # no holder named: nobody to tell, no crash
    ],
)
def test_who_hears_about_what(event_type, payload, expected):
    got = [(n.recipient_id, n.kind, n.other_id) for n in notices_for(event_type, payload)]
    assert got == expected


def test_the_references_a_client_links_to_travel_with_the_notice():
    [notice] = notices_for("RequestDeclined", {"request_id": "r1", "requester_id": A, "current_holder_id": B,
                                               "copy_id": C, "accepted_request_id": "r2"})
    assert (notice.copy_id, dict(notice.refs)) == (C, {"request_id": "r1", "accepted_request_id": "r2"})


def test_each_sentence_names_the_book_and_the_person():
    payload = {"title": "The Quiet Orchard", "other_name": "Bob Marley", "request_kind": "borrow"}
    for kind in ("request_created", "request_accepted", "request_declined", "request_cancelled",
                 "exchange_completed", "exchange_suspected", "return_started", "return_cancelled",
                 "suspected_exchange_dismissed"):
        text = describe(kind, payload)
        assert "\u201cThe Quiet Orchard\u201d" in text and "Bob Marley" in text, (kind, text)
    assert describe("request_created", payload) == "Bob Marley asked to borrow your copy of \u201cThe Quiet Orchard\u201d."
    assert "accepted another request" in describe("request_declined", {**payload, "accepted_request_id": "r"})


def test_backoff_grows_then_stops():
    schedule = (60, 300, 1500)
    assert [retry_delay_s(n, schedule) for n in (1, 2, 3, 4)] == [60, 300, 1500, None]


# --- The inbox, through the consumer ---------------------------------------------------------------------------

@pytest.fixture
def db(db_url):
    with psycopg.connect(db_url, autocommit=True, row_factory=dict_row) as conn:
        yield conn


def _user(db, handle: str, name: str, email: str | None = None) -> str:
    return str(db.execute("insert into contact.user (handle, display_name, email) values (%s, %s, %s) "
                          "returning user_id", (handle, name, email)).fetchone()["user_id"])


def _copy(db, holder: str, title: str = "The Quiet Orchard") -> str:
    book = db.execute("insert into catalog.book (title, authors) values (%s, '{Maria Lindqvist}') returning book_id",
                      (title,)).fetchone()["book_id"]
    return str(db.execute("insert into catalog.copy (book_id, owner_id, current_holder_id) values (%s, %s, %s) "
                          "returning copy_id", (book, holder, holder)).fetchone()["copy_id"])


@pytest.fixture
def people(db):
    alice = _user(db, "alice", "Alice Liddell", "alice@example.org")
    bob = _user(db, "bob", "Bob Marley", "bob@example.org")
    carol = _user(db, "carol", "Carol Danvers")  # no e-mail address
    return {"alice": alice, "bob": bob, "carol": carol, "copy": _copy(db, alice)}


def _announce(db, event) -> int:
    with db.transaction():
        return append_event(db, event)


def _request(db, people, requester="bob") -> RequestCreated:
    return RequestCreated(request_id=str(uuid.uuid4()), requester_id=people[requester], copy_id=people["copy"],
                          current_holder_id=people["alice"])


INBOX_ONLY = WorkerConfig(mailer_factory=None)


def test_a_request_reaches_the_holder_naming_the_book_and_the_requester(db, people):
    event_id = _announce(db, _request(db, people))
    report = run_round(db, INBOX_ONLY)

    assert (report.events, report.notifications, report.mails_queued) == (1, 1, 0)
    rows, count = inbox.list_for(db, people["alice"])
    assert count == 1
    [row] = rows
    assert row["kind"] == "request_created" and row["read_at"] is None
    assert row["payload"]["title"] == "The Quiet Orchard" and row["payload"]["other_name"] == "Bob Marley"
    assert describe(row["kind"], row["payload"]) == "Bob Marley asked for your copy of \u201cThe Quiet Orchard\u201d."
    assert inbox.list_for(db, people["bob"]) == ([], 0)
    stored = db.execute("select event_id from notification.notification").fetchone()
    assert stored["event_id"] == event_id


def test_a_completed_hand_over_reaches_both_and_an_acceptance_the_requester(db, people):
    _announce(db, ExchangeAccepted(exchange_id=str(uuid.uuid4()), request_id=str(uuid.uuid4()),
                                   copy_id=people["copy"], from_user_id=people["alice"], to_user_id=people["bob"]))
    _announce(db, ExchangeCompleted(exchange_id=str(uuid.uuid4()), copy_id=people["copy"],
                                    from_user_id=people["alice"], to_user_id=people["bob"], degradation_rating=8))
    run_round(db, INBOX_ONLY)

    kinds = {who: [r["kind"] for r in inbox.list_for(db, people[who])[0]] for who in ("alice", "bob")}
    assert kinds == {"alice": ["exchange_completed"], "bob": ["exchange_completed", "request_accepted"]}
    alices = inbox.list_for(db, people["alice"])[0][0]["payload"]
    assert alices["other_name"] == "Bob Marley"


def test_a_replayed_event_adds_no_notification_and_no_mail(db, people):
    """At-least-once: the cursor put back to the start replays every event, and the inbox stays as it was."""
    for requester in ("bob", "carol"):
        _announce(db, _request(db, people, requester))
    config = WorkerConfig(mailer_factory=lambda: _NoMail(), from_address="covr@example.org")
    first = run_round(db, config)
    assert (first.notifications, first.mails_queued) == (2, 2)
    before = db.execute("select notification_id, payload from notification.notification order by 1").fetchall()

    db.execute("update outbox.consumer set last_xact_id = '0', last_event_id = 0 where name = 'notifications'")
    again = run_round(db, config)

    assert (again.events, again.notifications, again.mails_queued) == (2, 0, 0)
    assert db.execute("select notification_id, payload from notification.notification order by 1").fetchall() == before
    assert db.execute("select count(*) as n from notification.email_delivery").fetchone()["n"] == 2


class _NoMail:
    """A mailer for tests about queueing only: sends nothing and says so."""

    def send(self, message):
        from covr_core.notifications.mail import SendFailed

        raise SendFailed("test mailer sends nothing")

    def close(self):
        pass


def test_mail_is_queued_only_when_smtp_is_configured_and_the_person_has_an_address(db, people):
    _announce(db, _request(db, people))  # alice, with an address, is the holder
    run_round(db, INBOX_ONLY)
    assert db.execute("select count(*) as n from notification.email_delivery").fetchone()["n"] == 0

    _announce(db, ExchangeCompleted(exchange_id=str(uuid.uuid4()), copy_id=people["copy"],
                                    from_user_id=people["alice"], to_user_id=people["carol"]))
    report = run_round(db, WorkerConfig(mailer_factory=lambda: _NoMail()))
    assert (report.notifications, report.mails_queued) == (2, 1)
    [queued] = db.execute("select d.to_address from notification.email_delivery d").fetchall()
    assert queued["to_address"] == "alice@example.org"  # carol has none: her inbox only


def test_an_event_naming_nobody_known_is_passed_over_and_the_rest_go_on(db, people):
    _announce(db, RequestCreated(request_id=str(uuid.uuid4()), requester_id=people["bob"], copy_id=people["copy"],
                                 current_holder_id=str(uuid.uuid4())))
    _announce(db, _request(db, people))
    report = run_round(db, INBOX_ONLY)

    assert (report.events, report.notifications, report.consume_error) == (2, 1, None)


def test_marking_read_is_the_recipients_alone(db, people):
    for _ in range(3):
        _announce(db, _request(db, people))
    run_round(db, INBOX_ONLY)
    rows, _ = inbox.list_for(db, people["alice"])

    marked = inbox.mark_read(db, people["alice"], rows[0]["notification_id"])
    assert marked["read_at"] is not None
    assert inbox.mark_read(db, people["alice"], rows[0]["notification_id"])["read_at"] == marked["read_at"]
    with pytest.raises(NotFound, match=f"notification {rows[1]['notification_id']} not found"):
        inbox.mark_read(db, people["bob"], rows[1]["notification_id"])
    assert inbox.list_for(db, people["alice"], unread=True)[1] == 2
    assert inbox.mark_all_read(db, people["alice"]) == 2
    assert inbox.unread_count(db, people["alice"]) == 0


def test_a_suspected_exchange_from_ingest_reaches_the_holder_through_the_outbox(db, people):
    """Ingest writes no notification itself: its ExchangeSuspected event does, through the consumer."""
    dave = _user(db, "dave", "Dave Grohl")
    image = db.execute(
        "insert into media.image (object_key, uploader_id, status, sha256, phash, byte_size, format) "
        "values (%s, %s, 'accepted', %s, 1, 10, 'jpeg') returning image_id",
        (f"uploads/{dave}/x.jpg", dave, "cd" * 32),
    ).fetchone()
    image_id = str(image["image_id"])
    evidence = DedupEvidence(image_id=image_id, uploader_id=dave, exact_match_image_id=None, phash_matches=(),
                             identified_book_id=None, identification_source=None, book_in_catalog=False,
                             uploader_copy_id=None, other_copies=(), can_create_book=False)
    outcome = Outcome("exchange_suspected", "phash_match", 3, "suspect_exchange", people["copy"], None,
                      people["alice"])
    with db.transaction():
        apply_outcome(db, image={"image_id": image_id, "uploader_id": dave}, identification={}, evidence=evidence,
                      outcome=outcome, run_id="run-1")
    assert db.execute("select count(*) as n from notification.notification").fetchone()["n"] == 0

    run_round(db, INBOX_ONLY)
    [row] = inbox.list_for(db, people["alice"])[0]
    assert row["kind"] == "exchange_suspected"
    assert (row["payload"]["other_name"], row["payload"]["title"]) == ("Dave Grohl", "The Quiet Orchard")
    assert row["payload"]["suspected_exchange_id"]


def test_old_contact_notifications_move_to_the_inbox_without_a_second_copy(empty_db_url):
    """0012 carries contact.notification forward; a row its event also announces is linked, not duplicated."""
    with psycopg.connect(empty_db_url, autocommit=True, row_factory=dict_row) as conn:
        for f in migrations.migration_files():
            if f.name < "0012":
                conn.execute(f.sql)
        alice = _user(conn, "alice", "Alice")
        dave = _user(conn, "dave", "Dave")
        copy = _copy(conn, alice)
        images = [str(conn.execute(
            "insert into media.image (object_key, uploader_id, status, sha256, phash, byte_size, format) "
            "values (%s, %s, 'accepted', %s, 1, 10, 'jpeg') returning image_id",
            (f"uploads/{dave}/{i}.jpg", dave, f"{i:02d}" * 32)).fetchone()["image_id"]) for i in range(2)]
        # Image 0 was announced by an event (0008 onwards) as well; image 1 predates the event.
        suspected = conn.execute("insert into exchange.suspected_exchange (image_id, copy_id, uploader_id, holder_id)"
                                 " values (%s, %s, %s, %s) returning suspected_exchange_id",
                                 (images[0], copy, dave, alice)).fetchone()["suspected_exchange_id"]
        with conn.transaction():
            append_event(conn, ExchangeSuspected(suspected_exchange_id=str(suspected), image_id=images[0],
                                                 copy_id=copy, uploader_id=dave, holder_id=alice))
        for i, image_id in enumerate(images):
            conn.execute("insert into contact.notification (user_id, kind, payload, read_at) values "
                         "(%s, 'exchange_suspected', %s, %s)",
                         (alice, psycopg.types.json.Jsonb({"image_id": image_id, "copy_id": copy,
                                                           "uploader_id": dave}),
                          "2025-01-01T00:00:00Z" if i == 1 else None))
        conn.execute([f for f in migrations.migration_files() if f.name.startswith("0012")][0].sql)

        assert conn.execute("select to_regclass('contact.notification') as t").fetchone()["t"] is None
        run_round(conn, INBOX_ONLY)
        rows = conn.execute("select event_id, payload ->> 'image_id' as image_id, read_at is not null as is_read "
                            "from notification.notification order by notification_id").fetchall()

    assert [(r["image_id"], r["is_read"]) for r in rows] == [(images[0], False), (images[1], True)]
    assert rows[0]["event_id"] is not None and rows[1]["event_id"] is None


# --- Mail over a real SMTP server on loopback ------------------------------------------------------------------

def _mail_config(smtp_server, **kw) -> WorkerConfig:
    return WorkerConfig(mailer_factory=lambda: SmtpMailer(smtp_server.host, smtp_server.port, timeout=10),
                        from_address="covr@example.org", **kw)


def test_a_mail_names_the_book_and_the_person_and_goes_once(db, people, smtp_server):
    _announce(db, _request(db, people))
    config = _mail_config(smtp_server)
    report = run_round(db, config)

    assert (report.mails_queued, report.sent) == (1, 1)
    [mail] = smtp_server.messages
    assert mail["To"] == "Alice Liddell <alice@example.org>"
    assert mail["Subject"] == "Bob Marley asked for The Quiet Orchard"
    body = mail.get_content()
    assert mail.get_content_type() == "text/plain"
    assert "Hello Alice Liddell," in body
    assert "Bob Marley asked for your copy of \u201cThe Quiet Orchard\u201d." in body
    delivery = db.execute("select * from notification.email_delivery").fetchone()
    assert (delivery["status"], delivery["attempts"], delivery["next_attempt_at"]) == ("sent", 1, None)
    assert mail["Message-ID"] == f"<covr.notification.{delivery['notification_id']}.1@example.org>"

    assert run_round(db, config).sent == 0
    assert len(smtp_server.messages) == 1


def test_a_refused_send_is_retried_with_backoff_and_visible_until_it_goes(db, people, smtp_server):
    _announce(db, _request(db, people))
    answers = iter(["451 4.3.0 mailbox busy", "451 4.3.0 still busy"])
    smtp_server.before_accept = lambda n: next(answers, None)
    config = _mail_config(smtp_server)

    assert run_round(db, config).retrying == 1
    d = db.execute("select attempts, status, last_error, next_attempt_at - now() as wait "
                   "from notification.email_delivery").fetchone()
    assert (d["attempts"], d["status"]) == (1, "pending") and "451" in d["last_error"]
    assert 55 <= d["wait"].total_seconds() <= 60
    assert [r["last_error"] for r in deliveries.troubled(db)] == [d["last_error"]]
    assert deliveries.summary(db).retrying == 1

    assert run_round(db, config).sent == 0  # not due yet: nothing is tried
    db.execute("update notification.email_delivery set next_attempt_at = now() - interval '1 s'")
    assert run_round(db, config).retrying == 1
    d = db.execute("select attempts, next_attempt_at - now() as wait from notification.email_delivery").fetchone()
    assert d["attempts"] == 2 and 295 <= d["wait"].total_seconds() <= 300

    db.execute("update notification.email_delivery set next_attempt_at = now() - interval '1 s'")
    assert run_round(db, config).sent == 1
    assert len(smtp_server.messages) == 1
    s = deliveries.summary(db)
    assert (s.sent, s.pending, s.failed) == (1, 0, 0)


def test_a_mail_failed_for_good_is_visible_and_can_be_put_back(db, people, smtp_server):
    _announce(db, _request(db, people))
    smtp_server.before_accept = lambda n: "550 5.1.1 no such mailbox"
    config = _mail_config(smtp_server)

    assert run_round(db, config).failed == 1
    [trouble] = deliveries.troubled(db)
    assert trouble["status"] == "failed" and "550" in trouble["last_error"]
    assert trouble["to_address"] == "alice@example.org"

    smtp_server.before_accept = None
    assert run_round(db, config).sent == 0  # failed is final until an operator puts it back
    assert deliveries.retry_failed(db) == [trouble["notification_id"]]
    assert run_round(db, config).sent == 1
    assert len(smtp_server.messages) == 1


def test_attempts_run_out_after_the_schedule(db, people, smtp_server):
    _announce(db, _request(db, people))
    smtp_server.before_accept = lambda n: "451 4.3.0 busy"
    config = _mail_config(smtp_server, backoff_s=(0, 0))

    reports = [run_round(db, config) for _ in range(3)]
    assert [(r.retrying, r.failed) for r in reports] == [(1, 0), (1, 0), (0, 1)]
    d = db.execute("select status, attempts from notification.email_delivery").fetchone()
    assert (d["status"], d["attempts"]) == ("failed", 3)


def test_a_server_that_drops_the_connection_mid_batch_loses_and_repeats_nothing(db, people, smtp_server):
    for _ in range(6):
        _announce(db, _request(db, people))
    smtp_server.before_accept = lambda n: "421 4.3.2 shutting down" if n == 4 else None
    config = _mail_config(smtp_server, backoff_s=(0,))

    first = run_round(db, config)
    assert (first.sent, first.retrying) == (3, 1) and "421" in first.stopped
    smtp_server.before_accept = None
    second = run_round(db, config)
    assert second.sent == 3

    ids = smtp_server.message_ids()
    assert len(ids) == 6 and len(set(ids)) == 6
    assert deliveries.summary(db).sent == 6


def test_two_workers_sending_at_once_send_each_mail_once(db_url, db, people, smtp_server):
    for _ in range(20):
        _announce(db, _request(db, people))
    run_round(db, WorkerConfig(mailer_factory=lambda: _NoMail(), send_limit=0))  # queue only
    assert db.execute("select count(*) as n from notification.email_delivery").fetchone()["n"] == 20
    results = []

    def worker():
        with psycopg.connect(db_url, autocommit=True, row_factory=dict_row) as conn:
            mailer = SmtpMailer(smtp_server.host, smtp_server.port, timeout=10)
            try:
                results.append(deliveries.send_due(conn, mailer, from_address="covr@example.org"))
            finally:
                mailer.close()

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)

    ids = smtp_server.message_ids()
    assert len(ids) == 20 and len(set(ids)) == 20
    assert sum(r.sent for r in results) == 20
    assert consumer_state(db, "notifications").pending == 0
