"""Mail by SMTP (smtplib): a plain-text message per notification, naming the book and the person."""

from __future__ import annotations

import smtplib
import ssl
from email.message import EmailMessage
from email.utils import formataddr, formatdate
from typing import Protocol

from covr_core.notifications.rules import describe, subject


class SendFailed(Exception):
    """One message was not accepted. `permanent`: the server refused it for good (a 5xx for the recipient).

    `connection_lost`: the connection is gone, so the rest of the round waits for the next one.
    """

    def __init__(self, reason: str, *, permanent: bool = False, connection_lost: bool = False):
        super().__init__(reason)
        self.reason = reason
        self.permanent = permanent
        self.connection_lost = connection_lost


class Mailer(Protocol):
    def send(self, message: EmailMessage) -> None: ...

    def close(self) -> None: ...


def message_id(notification_id: int, event_id: int | None, from_address: str) -> str:
    """The same Message-ID for every attempt at one notification, so a mail client shows a resend once."""
    domain = from_address.rpartition("@")[2] or "covr.localhost"
    return f"<covr.notification.{notification_id}.{event_id or 0}@{domain}>"


def compose(
    *,
    notification_id: int,
    event_id: int | None,
    kind: str,
    payload: dict,
    to_address: str,
    recipient_name: str,
    from_address: str,
) -> EmailMessage:
    """A plain-text mail for one notification: the sentence of the inbox, then where to act on it."""
    msg = EmailMessage()
    msg["From"] = formataddr(("Covr", from_address))
    msg["To"] = formataddr((recipient_name, to_address))
    msg["Subject"] = subject(kind, payload)
    msg["Date"] = formatdate(localtime=False)
    msg["Message-ID"] = message_id(notification_id, event_id, from_address)
    msg["X-Covr-Notification"] = str(notification_id)
    msg["Auto-Submitted"] = "auto-generated"
    msg.set_content(
        f"Hello {recipient_name},\n\n"
        f"{describe(kind, payload)}\n\n"
        f"You can see and answer it in Covr under your notifications.\n\n"
        f"-- \nCovr: books shared among people who know each other.\n"
    )
    return msg


class SmtpMailer:
    """One SMTP connection for a round of sends; opened on the first send, STARTTLS when the server offers it."""

    def __init__(self, host: str, port: int = 587, *, user: str | None = None, password: str | None = None,
                 timeout: float = 30.0):
        self.host, self.port, self.user, self.password, self.timeout = host, port, user, password, timeout
        self._smtp: smtplib.SMTP | None = None

    def _connect(self) -> smtplib.SMTP:
        if self._smtp is not None:
            return self._smtp
        try:
            if self.port == 465:
                smtp = smtplib.SMTP_SSL(self.host, self.port, timeout=self.timeout,
                                        context=ssl.create_default_context())
            else:
                smtp = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
                smtp.ehlo()
                if smtp.has_extn("starttls"):
                    smtp.starttls(context=ssl.create_default_context())
                    smtp.ehlo()
            if self.user:
                smtp.login(self.user, self.password or "")
        except (OSError, smtplib.SMTPException) as exc:
            raise SendFailed(f"cannot reach SMTP server {self.host}:{self.port}: {_reason(exc)}",
                             connection_lost=True) from exc
        self._smtp = smtp
        return smtp

    def send(self, message: EmailMessage) -> None:
        smtp = self._connect()
        try:
            refused = smtp.send_message(message)
        except smtplib.SMTPRecipientsRefused as exc:
            codes = [code for code, _ in exc.recipients.values()]
            raise SendFailed(f"SMTP server {self.host} refused {message['To']}: {_reason(exc)}",
                             permanent=all(code >= 500 for code in codes)) from exc
        except smtplib.SMTPResponseException as exc:
            # A refused message leaves the session usable; the server dropping us does not.
            lost = exc.smtp_code == 421
            if lost:
                self._drop()
            # A 5xx to the message itself is final; a refused sender is our configuration, worth retrying.
            permanent = isinstance(exc, smtplib.SMTPDataError) and exc.smtp_code >= 500
            raise SendFailed(f"SMTP server {self.host} answered {_reason(exc)}", permanent=permanent,
                             connection_lost=lost) from exc
        except (smtplib.SMTPServerDisconnected, OSError) as exc:
            self._drop()
            raise SendFailed(f"lost the SMTP connection to {self.host}:{self.port}: {_reason(exc)}",
                             connection_lost=True) from exc
        except smtplib.SMTPException as exc:
            raise SendFailed(f"SMTP server {self.host}: {_reason(exc)}") from exc
        if refused:
            raise SendFailed(f"SMTP server {self.host} refused {', '.join(refused)}", permanent=True)

    def _drop(self) -> None:
        smtp, self._smtp = self._smtp, None
        if smtp is not None:
            try:
                smtp.close()
            except OSError:
                pass

    def close(self) -> None:
        smtp, self._smtp = self._smtp, None
        if smtp is None:
            return
        try:
            smtp.quit()
        except (OSError, smtplib.SMTPException):
            smtp.close()


def _reason(exc: BaseException) -> str:
    if isinstance(exc, smtplib.SMTPResponseException):
        text = exc.smtp_error.decode(errors="replace") if isinstance(exc.smtp_error, bytes) else str(exc.smtp_error)
        return f"{exc.smtp_code} {' '.join(text.split())}"
    return " ".join(str(exc).split()) or type(exc).__name__
