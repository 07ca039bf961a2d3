"""`covr notifications` against real Postgres and a real SMTP server: the worker, a crash mid-batch, the status."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psycopg
import pytest
from psycopg.rows import dict_row

from covr_core.shared.events import RequestCreated
from covr_core.shared.outbox import append_event
from covr_pipelines.cli import main

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def db(db_url):
    with psycopg.connect(db_url, autocommit=True, row_factory=dict_row) as conn:
        yield conn


@pytest.fixture
def env(db_url, tmp_path, smtp_server, monkeypatch) -> dict[str, str]:
    values = {"DATABASE_URL": db_url, "COVR_HOME": str(tmp_path / "home"), "COVR_SMTP_HOST": smtp_server.host,
              "COVR_SMTP_PORT": str(smtp_server.port), "COVR_SMTP_FROM": "covr@example.org"}
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    return {**os.environ, **values}


def _requests(db, n: int) -> list[str]:
    """`n` requests from different members for alice's copy; returns the requesters' display names."""
    alice = db.execute("insert into contact.user (handle, display_name, email) values "
                       "('alice', 'Alice Liddell', 'alice@example.org') returning user_id").fetchone()["user_id"]
    book = db.execute("insert into catalog.book (title) values ('The Quiet Orchard') returning book_id").fetchone()
    copy = db.execute("insert into catalog.copy (book_id, owner_id, current_holder_id) values (%s, %s, %s) "
                      "returning copy_id", (book["book_id"], alice, alice)).fetchone()["copy_id"]
    names = []
    for i in range(n):
        name = f"Requester {i:02d}"
        user = db.execute("insert into contact.user (handle, display_name) values (%s, %s) returning user_id",
                          (f"r{i:02d}", name)).fetchone()["user_id"]
        with db.transaction():
            append_event(db, RequestCreated(request_id=str(uuid.uuid4()), requester_id=str(user),
                                            copy_id=str(copy), current_holder_id=str(alice)))
        names.append(name)
    return names


def _covr(*args: str, env: dict[str, str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "covr_pipelines.cli", *args], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=120, **kw)


def _wait_for_other_backends_to_go(db, timeout: float = 10.0) -> None:
    """A killed client's backend rolls back and leaves; wait until it has, so its locks are gone."""
    deadline = time.monotonic() + timeout
    while db.execute("select count(*) as n from pg_stat_activity where datname = current_database() "
                     "and pid <> pg_backend_pid()").fetchone()["n"]:
        assert time.monotonic() < deadline, "the killed worker's backend did not go away"
        time.sleep(0.05)


def test_worker_once_mails_and_status_reports(db, env, smtp_server, capsys):
    names = _requests(db, 3)

    assert main(["notifications", "worker", "--once"]) == 0
    out = capsys.readouterr().out
    assert out.strip() == ("notifications: 3 event(s), 3 notification(s), 3 mail(s) queued, 3 sent, "
                           "0 to retry, 0 failed")
    bodies = [m.get_content() for m in smtp_server.messages]
    assert all("\u201cThe Quiet Orchard\u201d" in b for b in bodies)
    assert sorted(next(n for n in names if n in b) for b in bodies) == names

    assert main(["notifications", "status"]) == 0
    out = capsys.readouterr().out
    assert "consumer notifications: 3 event(s) handled, 0 waiting" in out
    assert f"mail (SMTP {smtp_server.host}:{smtp_server.port}): 0 pending (0 due now, 0 retrying), 3 sent, 0 failed" in out


def test_failed_mail_shows_in_status_until_put_back(db, env, smtp_server, capsys):
    _requests(db, 2)
    smtp_server.before_accept = lambda n: "550 5.1.1 mailbox unavailable" if n == 1 else None

    assert main(["notifications", "worker", "--once"]) == 0
    assert "1 sent, 0 to retry, 1 failed" in capsys.readouterr().out
    assert main(["notifications", "status"]) == 1
    out = capsys.readouterr().out
    [failed_line] = [line for line in out.splitlines() if line.startswith("  failed ")]
    assert "to alice@example.org, 1 attempt(s)" in failed_line and "550 5.1.1 mailbox unavailable" in failed_line
    assert "covr notifications retry" in out
    failed_id = int(failed_line.split("notification ")[1].split(" ")[0])

    smtp_server.before_accept = None
    assert main(["notifications", "retry", "999999"]) == 2
    assert "no failed mail for notification(s) 999999" in capsys.readouterr().err
    assert main(["notifications", "retry", str(failed_id)]) == 0
    assert capsys.readouterr().out.strip() == f"1 failed mail(s) back in the queue: {failed_id}"
    assert main(["notifications", "worker", "--once"]) == 0
    assert main(["notifications", "status"]) == 0
    assert "2 sent, 0 failed" in capsys.readouterr().out
    assert len(set(smtp_server.message_ids())) == len(smtp_server.messages) == 2


def test_a_worker_killed_mid_batch_resumes_with_no_lost_and_no_duplicate_mail(db, env, smtp_server):
    """SIGKILL while the server holds the 6th of 12 mails: 5 are sent, the 6th is pending again, none twice."""
    _requests(db, 12)
    worker = subprocess.Popen([sys.executable, "-m", "covr_pipelines.cli", "notifications", "worker",
                               "--interval", "0.2"], env=env, cwd=ROOT, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)

    def kill_on_sixth(n: int):
        if n == 6:
            os.kill(worker.pid, signal.SIGKILL)
            return "451 4.3.0 the client is gone anyway"
        return None

    smtp_server.before_accept = kill_on_sixth
    try:
        worker.wait(timeout=60)
    finally:
        if worker.poll() is None:
            worker.kill()
    assert worker.returncode == -signal.SIGKILL, worker.communicate()
    assert len(smtp_server.messages) == 5

    _wait_for_other_backends_to_go(db)
    states = db.execute("select status, attempts, count(*) as n from notification.email_delivery "
                        "group by status, attempts order by status").fetchall()
    assert [(s["status"], s["attempts"], s["n"]) for s in states] == [("pending", 0, 7), ("sent", 1, 5)]

    smtp_server.before_accept = None
    resumed = _covr("notifications", "worker", "--once", env=env)
    assert resumed.returncode == 0, resumed.stderr
    assert "0 event(s), 0 notification(s), 0 mail(s) queued, 7 sent" in resumed.stdout

    sent = db.execute("select d.notification_id, n.event_id from notification.email_delivery d "
                      "join notification.notification n using (notification_id) where d.status = 'sent'").fetchall()
    expected = sorted(f"<covr.notification.{r['notification_id']}.{r['event_id']}@example.org>" for r in sent)
    received = smtp_server.message_ids()
    assert len(received) == 12 and sorted(received) == expected  # every mail, each exactly once
    assert db.execute("select count(*) as n from notification.notification").fetchone()["n"] == 12


def test_sigterm_stops_the_worker_cleanly(db, env):
    worker = subprocess.Popen([sys.executable, "-m", "covr_pipelines.cli", "notifications", "worker",
                               "--interval", "0.2"], env=env, cwd=ROOT, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    try:
        first = worker.stdout.readline()
        assert first.startswith("notifications worker on PostgreSQL at"), first
        assert "mail via 127.0.0.1:" in first
        worker.send_signal(signal.SIGTERM)
        _, err = worker.communicate(timeout=30)
    finally:
        if worker.poll() is None:
            worker.kill()
    assert worker.returncode == 128 + signal.SIGTERM
    assert err.strip().endswith("covr: terminated") and "Traceback" not in err


def test_without_smtp_the_worker_fills_inboxes_only(db, env, monkeypatch, smtp_server, capsys):
    monkeypatch.delenv("COVR_SMTP_HOST")
    _requests(db, 2)

    assert main(["notifications", "worker", "--once"]) == 0
    assert "2 notification(s), 0 mail(s) queued, 0 sent" in capsys.readouterr().out
    assert smtp_server.messages == []
    assert main(["notifications", "status"]) == 0
    assert "mail (SMTP not configured): 0 pending" in capsys.readouterr().out
