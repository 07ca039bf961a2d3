"""The notifications worker: outbox events into inboxes, then due mails out, round after round."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass

import psycopg

from covr_core.notifications import deliveries, inbox
from covr_core.notifications.mail import Mailer, SmtpMailer
from covr_core.platform.settings import Settings
from covr_core.shared.consumer import consume_all, run_rounds

log = logging.getLogger(__name__)

# One worker at a time does a round; a second one waits its turn instead of racing for the same rows.
# (The consumer cursor and the delivery rows are safe under concurrency anyway: this only saves work.)
ADVISORY_LOCK_KEY = 0x636F7672_6E  # "covr" "n"


@dataclass(frozen=True)
class RoundReport:
    events: int = 0
    notifications: int = 0
    mails_queued: int = 0
    sent: int = 0
    retrying: int = 0
    failed: int = 0
    stopped: str | None = None  # why sending stopped early (the SMTP connection was lost)
    consume_error: str | None = None  # why events could not be handled; they are offered again next round
    busy: bool = False  # another worker held the round

    @property
    def anything(self) -> bool:
        return any((self.events, self.notifications, self.sent, self.retrying, self.failed, self.stopped,
                    self.consume_error))

    def line(self) -> str:
        if self.busy:
            return "another worker is in its round; nothing done"
        text = (f"{self.events} event(s), {self.notifications} notification(s), {self.mails_queued} mail(s) queued, "
                f"{self.sent} sent, {self.retrying} to retry, {self.failed} failed")
        if self.consume_error:
            text += f"; events not handled: {self.consume_error}"
        if self.stopped:
            text += f"; sending stopped: {self.stopped}"
        return text


@dataclass(frozen=True)
class WorkerConfig:
    mailer_factory: Callable[[], Mailer] | None  # None: no SMTP configured, inbox only
    from_address: str = "covr@localhost"
    batch_size: int = 100
    send_limit: int = 200
    backoff_s: tuple[int, ...] = deliveries.BACKOFF_S

    @classmethod
    def from_settings(cls, settings: Settings, **overrides) -> WorkerConfig:
        if not settings.smtp_host:
            return cls(mailer_factory=None, from_address=settings.smtp_from, **overrides)
        password = settings.smtp_password.get_secret_value() if settings.smtp_password else None

        def factory() -> Mailer:
            return SmtpMailer(settings.smtp_host, settings.smtp_port, user=settings.smtp_user, password=password)

        return cls(mailer_factory=factory, from_address=settings.smtp_from, **overrides)


def run_round(conn: psycopg.Connection, config: WorkerConfig) -> RoundReport:
    """Consume every readable event into inboxes (and the mail queue), then send the mails that are due.

    A handler error stops consumption for this round (the consumer records it, and the batch is offered
    again next round) but not sending: mails already queued still go out.
    """
    if not conn.execute("select pg_try_advisory_lock(%s) as ok", (ADVISORY_LOCK_KEY,)).fetchone()["ok"]:
        return RoundReport(busy=True)
    try:
        totals = {"notifications": 0, "mails": 0}

        def handle(c, events):
            recorded = inbox.record_events(c, events, mail=config.mailer_factory is not None)
            # Counted after the batch commits would be exact; a rolled-back batch raises out of here anyway.
            totals["notifications"] += recorded.notifications
            totals["mails"] += recorded.mails

        events, consume_error = 0, None
        try:
            events = consume_all(conn, inbox.CONSUMER, handle, batch_size=config.batch_size)
        except psycopg.OperationalError:
            raise  # the database is away: nothing else in this round can work
        except Exception as exc:  # noqa: BLE001 - recorded on the consumer row; the worker goes on
            log.exception("notifications consumer failed")
            consume_error = f"{type(exc).__name__}: {' '.join(str(exc).split())}"
        sent = deliveries.SendReport()
        if config.mailer_factory is not None:
            mailer = config.mailer_factory()
            try:
                sent = deliveries.send_due(conn, mailer, from_address=config.from_address,
                                           limit=config.send_limit, backoff_s=config.backoff_s)
            finally:
                mailer.close()
        return RoundReport(events=events, notifications=totals["notifications"], mails_queued=totals["mails"],
                           sent=sent.sent, retrying=sent.retrying, failed=sent.failed, stopped=sent.stopped,
                           consume_error=consume_error)
    finally:
        try:
            conn.execute("select pg_advisory_unlock(%s)", (ADVISORY_LOCK_KEY,))
        except psycopg.Error:
            pass  # a broken connection has lost its session locks already


def run(
    connection: Callable[[], AbstractContextManager[psycopg.Connection]],
    config: WorkerConfig,
    *,
    once: bool = False,
    interval_s: float = 2.0,
    stop: threading.Event | None = None,
    report: Callable[[RoundReport], None] | None = None,
) -> RoundReport:
    """Run rounds until `stop` is set (or one round with `once`); returns the last round's report.

    A round that fails (the database away, a handler error) is logged and retried after a growing pause of at
    most a minute; with `once` the error is raised, so a scheduler sees it.
    """
    def one_round() -> RoundReport:
        with connection() as conn:
            return run_round(conn, config)

    return run_rounds(one_round, name="notifications", idle=RoundReport(), once=once, interval_s=interval_s,
                      max_pause_s=60.0, stop=stop, report=report)
