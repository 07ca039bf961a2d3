"""Who hears about what: an outbox event becomes notices for people, and a notice becomes a sentence. Pure.

Rules read the event's type name and its JSON payload rather than the event classes, and accept the field
names the events have used (`current_holder_id` or `holder_id`, `cancelled_by` or `actor_id`), so an event
written by an older version of Covr still reaches its reader.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

KINDS = (
    "request_created", "request_accepted", "request_declined", "request_cancelled", "exchange_completed",
    "exchange_suspected", "return_started", "return_cancelled", "suspected_exchange_dismissed",
)

# Ids worth keeping with a notice, so a client can link to what it is about.
_REFERENCES = ("request_id", "exchange_id", "suspected_exchange_id", "accepted_request_id", "image_id")
_ACTOR_FIELDS = ("actor_id", "cancelled_by", "declined_by", "dismissed_by", "started_by", "by_user_id")


@dataclass(frozen=True)
class Notice:
    """One person to tell about one event: `other_id` is the person the message names, `copy_id` the book."""

    recipient_id: str
    kind: str
    copy_id: str | None
    other_id: str | None
    refs: Mapping[str, str] = field(default_factory=dict)


def notices_for(event_type: str, payload: Mapping) -> list[Notice]:
    """The notices one event gives rise to; none for events nobody needs to hear about (ImageUploaded, ...)."""
    rule = _RULES.get(event_type)
    if rule is None:
        return []
    # Nobody is told about their own step.
    notices = [n for n in rule(payload) if n.recipient_id != n.other_id]
    seen, unique = set(), []
    for n in notices:  # one notice per recipient and event: the inbox is unique on that pair
        if n.recipient_id not in seen:
            seen.add(n.recipient_id)
            unique.append(n)
    return unique


def _get(payload: Mapping, *names: str) -> str | None:
    for name in names:
        value = payload.get(name)
        if value:
            return str(value)
    return None


def _refs(payload: Mapping) -> dict[str, str]:
    return {k: str(payload[k]) for k in _REFERENCES if payload.get(k)}


def _notice(payload: Mapping, kind: str, recipient: str | None, other: str | None) -> list[Notice]:
    if recipient is None:
        return []
    return [Notice(recipient, kind, _get(payload, "copy_id"), other, _refs(payload))]


def _other_side(payload: Mapping, a: str | None, b: str | None, default: str | None) -> tuple[str | None, str | None]:
    """(recipient, actor) between two parties: whoever did not act; `default` receives when the actor is unknown."""
    actor = _get(payload, *_ACTOR_FIELDS)
    if actor is not None and actor in (a, b):
        return (b if actor == a else a), actor
    return default, (b if default == a else a)


def _request_parties(payload: Mapping) -> tuple[str | None, str | None]:
    return _get(payload, "requester_id"), _get(payload, "current_holder_id", "holder_id")


def _request_created(payload):
    requester, holder = _request_parties(payload)
    return _notice(payload, "request_created", holder, requester)


def _exchange_accepted(payload):
    requester = _get(payload, "requester_id", "to_user_id")
    holder = _get(payload, "current_holder_id", "holder_id", "from_user_id")
    return _notice(payload, "request_accepted", requester, holder)


def _request_declined(payload):
    requester, holder = _request_parties(payload)
    recipient, actor = _other_side(payload, requester, holder, default=requester)
    return _notice(payload, "request_declined", recipient, actor)


def _request_cancelled(payload):
    requester, holder = _request_parties(payload)
    recipient, actor = _other_side(payload, requester, holder, default=holder)
    return _notice(payload, "request_cancelled", recipient, actor)


def _exchange_completed(payload):
    giver, receiver = _get(payload, "from_user_id"), _get(payload, "to_user_id")
    return (_notice(payload, "exchange_completed", giver, receiver)
            + _notice(payload, "exchange_completed", receiver, giver))


def _exchange_suspected(payload):
    return _notice(payload, "exchange_suspected", _get(payload, "holder_id", "current_holder_id"),
                   _get(payload, "uploader_id"))


def _return_started(payload):
    holder, owner = _get(payload, "from_user_id"), _get(payload, "to_user_id")
    recipient, actor = _other_side(payload, holder, owner, default=owner)
    return _notice(payload, "return_started", recipient, actor)


def _return_cancelled(payload):
    holder, owner = _get(payload, "from_user_id"), _get(payload, "to_user_id")
    recipient, actor = _other_side(payload, holder, owner, default=owner)
    return _notice(payload, "return_cancelled", recipient, actor)


def _suspected_dismissed(payload):
    uploader, holder = _get(payload, "uploader_id"), _get(payload, "holder_id", "current_holder_id")
    recipient, actor = _other_side(payload, uploader, holder, default=uploader)
    return _notice(payload, "suspected_exchange_dismissed", recipient, actor)


_RULES = {
    "RequestCreated": _request_created,
    "ExchangeAccepted": _exchange_accepted,
    "RequestDeclined": _request_declined,
    "RequestCancelled": _request_cancelled,
    "ExchangeCompleted": _exchange_completed,
    "ExchangeSuspected": _exchange_suspected,
    "ReturnStarted": _return_started,
    "ReturnCancelled": _return_cancelled,
    "SuspectedExchangeDismissed": _suspected_dismissed,
}


def describe(kind: str, payload: Mapping) -> str:
    """The notice as one sentence naming the book and the person: the inbox's text and the mail's first line."""
    title = f"\u201c{payload['title']}\u201d" if payload.get("title") else "a book"
    other = payload.get("other_name") or "Someone"
    verb = {"borrow": "to borrow", "keep": "to keep"}.get(payload.get("request_kind") or "", "for")
    if kind == "request_created":
        return f"{other} asked {verb} your copy of {title}."
    if kind == "request_accepted":
        return f"{other} accepted your request for {title}. Arrange the hand-over; confirm it in Covr when you have the book."
    if kind == "request_declined":
        if payload.get("accepted_request_id"):
            return f"Your request for {title} was declined: {other} accepted another request for it."
        reason = f" ({payload['reason']})" if payload.get("reason") else ""
        return f"{other} declined your request for {title}{reason}."
    if kind == "request_cancelled":
        return f"{other} cancelled the request for {title}."
    if kind == "exchange_completed":
        return f"The hand-over of {title} between you and {other} is complete."
    if kind == "exchange_suspected":
        return (f"{other} photographed a copy of {title} that you hold. If you handed it over, confirm it in Covr; "
                f"otherwise dismiss it.")
    if kind == "return_started":
        return f"{other} is returning {title} to you. Confirm in Covr when you have it back."
    if kind == "return_cancelled":
        return f"{other} called off the return of {title}."
    if kind == "suspected_exchange_dismissed":
        return f"{other} said the photo of {title} does not mean it changed hands."
    return f"{other}: news about {title}."


def subject(kind: str, payload: Mapping) -> str:
    """A short mail subject naming the book."""
    title = payload.get("title") or "a book"
    other = payload.get("other_name") or "Someone"
    return {
        "request_created": f"{other} asked for {title}",
        "request_accepted": f"{other} accepted your request for {title}",
        "request_declined": f"Your request for {title} was declined",
        "request_cancelled": f"{other} cancelled the request for {title}",
        "exchange_completed": f"Hand-over of {title} complete",
        "exchange_suspected": f"Did {title} change hands?",
        "return_started": f"{other} is returning {title}",
        "return_cancelled": f"Return of {title} called off",
        "suspected_exchange_dismissed": f"{title}: no hand-over",
    }.get(kind, f"News about {title}")


def retry_delay_s(attempts: int, schedule: tuple[int, ...]) -> int | None:
    """Seconds to wait after the `attempts`-th failed send, or None when no attempt is left."""
    if attempts < 1 or attempts > len(schedule):
        return None
    return schedule[attempts - 1]
