"""An outbox event and the state change it announces commit or roll back together."""

from __future__ import annotations

import pytest

from covr_core.shared.events import DedupResolved, ImageUploaded
from covr_core.shared.outbox import append_event


class Boom(Exception):
    pass


def _upload(conn, handle: str) -> ImageUploaded:
    user_id = conn.execute(
        "insert into contact.user (handle, display_name) values (%s, %s) returning user_id", (handle, handle)
    ).fetchone()["user_id"]
    image_id = conn.execute(
        "insert into media.image (object_key, uploader_id, status, sha256, phash, byte_size, format) "
        "values (%s, %s, 'accepted', %s, 42, 10, 'jpeg') returning image_id",
        (f"uploads/{user_id}/a.jpg", user_id, "ab" * 32),
    ).fetchone()["image_id"]
    return ImageUploaded(
        image_id=image_id, uploader_id=user_id, object_key=f"uploads/{user_id}/a.jpg", sha256="ab" * 32, phash=42
    )


def _count(conn, sql: str) -> int:
    return conn.execute(sql).fetchone()["n"]


def test_event_and_state_change_commit_together(conn):
    with conn.transaction():
        event = _upload(conn, "alice")
        event_id = append_event(conn, event)

    assert event_id is not None
    stored = conn.execute("select type, payload from outbox.event where event_id = %s", (event_id,)).fetchone()
    assert stored["type"] == "ImageUploaded"
    assert stored["payload"]["image_id"] == str(event.image_id)
    assert stored["payload"]["phash"] == 42
    assert stored["payload"]["timestamp"].endswith("Z")


def test_event_and_state_change_roll_back_together(conn):
    with pytest.raises(Boom), conn.transaction():
        append_event(conn, _upload(conn, "bob"))
        raise Boom

    assert _count(conn, "select count(*) as n from media.image") == 0
    assert _count(conn, "select count(*) as n from outbox.event") == 0


def test_the_same_fact_announced_twice_is_one_event(conn):
    with conn.transaction():
        event = _upload(conn, "carol")
        resolved = DedupResolved(image_id=event.image_id, decision="ignore", reason="none")
        first = append_event(conn, resolved)
        second = append_event(conn, resolved.model_copy(update={}))

    assert first is not None and second is None
    assert _count(conn, "select count(*) as n from outbox.event") == 1


def test_event_contract_values_are_exact():
    with pytest.raises(ValueError):
        DedupResolved(image_id="x", decision="duplicate", reason="none")
    with pytest.raises(ValueError):
        DedupResolved(image_id="x", decision="ignore", reason="similar")
