"""The outbox consumer never skips an event, however transactions interleave, and replays only what did not commit."""

from __future__ import annotations

import threading

import psycopg
import pytest
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from covr_core.shared.consumer import consume, consume_all, consumer_state


class Boom(Exception):
    pass


@pytest.fixture
def connect(db_url):
    """Autocommit connections, as the pool hands out; closed at the end of the test."""
    opened = []

    def open_one() -> psycopg.Connection:
        conn = psycopg.connect(db_url, autocommit=True, row_factory=dict_row)
        opened.append(conn)
        return conn

    yield open_one
    for conn in opened:
        conn.close()


def _insert_event(conn, key: str) -> int:
    return conn.execute(
        "insert into outbox.event (type, idempotency_key, payload) values ('ImageUploaded', %s, %s) "
        "returning event_id",
        (key, Jsonb({"key": key})),
    ).fetchone()["event_id"]


class Recorder:
    def __init__(self):
        self.seen: list[str] = []

    def __call__(self, conn, events):
        self.seen.extend(e.payload["key"] for e in events)


def test_an_event_committed_after_a_higher_id_is_still_delivered(connect):
    """Tx A takes event id 1 but commits after tx B, which takes id 2: the read in between must wait for 1."""
    a, b, reader = connect(), connect(), connect()
    handler = Recorder()

    tx_a = a.transaction()
    tx_a.__enter__()
    id_a = _insert_event(a, "A")
    with b.transaction():
        id_b = _insert_event(b, "B")
    assert id_a < id_b

    # B is committed and visible, but A (older, lower id) is still in flight: nothing may be read past it.
    visible = reader.execute("select array_agg(event_id) as ids from outbox.event").fetchone()["ids"]
    assert visible == [id_b]
    assert consume(reader, "test", handler) == 0
    assert handler.seen == []
    assert consumer_state(reader, "test").last_event_id == 0

    tx_a.__exit__(None, None, None)
    assert consume(reader, "test", handler) == 2
    assert handler.seen == ["A", "B"]
    assert consume(reader, "test", handler) == 0
    assert handler.seen == ["A", "B"]


def test_an_older_transaction_that_writes_its_event_last_is_not_skipped(connect):
    """Tx A starts writing first (older xid) but inserts its event after B committed one with a lower id."""
    a, b, reader = connect(), connect(), connect()
    handler = Recorder()

    tx_a = a.transaction()
    tx_a.__enter__()
    a.execute("select pg_current_xact_id()")  # A holds the older transaction id from here on
    with b.transaction():
        id_b = _insert_event(b, "B")
    assert consume(reader, "test", handler) == 0  # B's id is above A's: it waits behind A
    id_a = _insert_event(a, "A")
    assert id_b < id_a
    tx_a.__exit__(None, None, None)

    assert consume(reader, "test", handler) == 2
    assert handler.seen == ["A", "B"]  # transaction order, not id order


def test_a_naive_id_cursor_would_have_lost_the_late_event(connect):
    """The case the horizon exists for, shown with the reader it replaces."""
    a, b, reader = connect(), connect(), connect()
    tx_a = a.transaction()
    tx_a.__enter__()
    id_a = _insert_event(a, "A")
    with b.transaction():
        id_b = _insert_event(b, "B")
    naive_cursor = reader.execute("select max(event_id) as m from outbox.event").fetchone()["m"]
    tx_a.__exit__(None, None, None)

    after_naive = reader.execute("select event_id from outbox.event where event_id > %s", (naive_cursor,)).fetchall()
    assert naive_cursor == id_b and after_naive == []  # id_a would never be read
    handler = Recorder()
    consume(reader, "test", handler)
    assert sorted(handler.seen) == ["A", "B"] and id_a < id_b


def test_a_rolled_back_event_is_passed_over_and_nothing_waits_for_it(connect):
    a, reader = connect(), connect()
    with pytest.raises(Boom), a.transaction():
        _insert_event(a, "gone")
        raise Boom
    with a.transaction():
        _insert_event(a, "kept")
    handler = Recorder()

    assert consume(reader, "test", handler) == 1
    assert handler.seen == ["kept"]


def test_a_handler_failure_moves_nothing_and_the_batch_is_offered_again(connect):
    """An exception injected mid-batch rolls back the handler's writes and the cursor together."""
    conn = connect()
    with conn.transaction():
        for i in range(5):
            _insert_event(conn, f"e{i}")
    conn.execute("create table public.side_effect (key text primary key)")
    calls = {"n": 0}

    def handler(c, events):
        calls["n"] += 1
        for n, event in enumerate(events):
            if calls["n"] == 1 and n == 3:
                raise Boom("injected after three events")
            c.execute("insert into public.side_effect values (%s)", (event.payload["key"],))

    with pytest.raises(Boom):
        consume(conn, "test", handler)
    state = consumer_state(conn, "test")
    assert state.last_event_id == 0 and state.pending == 5
    assert state.last_error == "Boom: injected after three events"
    assert conn.execute("select count(*) as n from public.side_effect").fetchone()["n"] == 0

    assert consume(conn, "test", handler) == 5
    keys = [r["key"] for r in conn.execute("select key from public.side_effect order by key").fetchall()]
    assert keys == ["e0", "e1", "e2", "e3", "e4"]  # each once: the failed batch left nothing behind
    state = consumer_state(conn, "test")
    assert state.pending == 0 and state.handled == 5 and state.last_error is None


def test_batches_resume_from_the_durable_cursor(connect):
    conn = connect()
    with conn.transaction():
        for i in range(7):
            _insert_event(conn, f"e{i}")
    first = Recorder()
    assert consume(conn, "test", first, batch_size=3) == 3

    second = Recorder()  # a new process: only the database remembers where the first one stopped
    assert consume_all(connect(), "test", second, batch_size=3) == 4
    assert first.seen + second.seen == [f"e{i}" for i in range(7)]


def test_consumers_have_their_own_cursors(connect):
    conn = connect()
    with conn.transaction():
        _insert_event(conn, "only")
    one, two = Recorder(), Recorder()

    consume(conn, "one", one)
    consume(conn, "two", two)
    assert one.seen == two.seen == ["only"]


def test_two_processes_on_one_consumer_take_turns(connect):
    """While one holds the consumer, the other handles nothing rather than the same batch."""
    first, second = connect(), connect()
    with first.transaction():
        for i in range(3):
            _insert_event(first, f"e{i}")
    inside, release = threading.Event(), threading.Event()
    seen: list[str] = []

    def slow(conn, events):
        seen.extend(e.payload["key"] for e in events)
        inside.set()
        assert release.wait(10)

    worker = threading.Thread(target=consume, args=(first, "test", slow))
    worker.start()
    assert inside.wait(10)
    assert consume(second, "test", Recorder()) == 0  # skip locked: busy, not blocked and not doubled
    release.set()
    worker.join(10)

    assert seen == ["e0", "e1", "e2"]
    assert consume(second, "test", Recorder()) == 0


def test_a_transaction_in_flight_delays_but_a_later_read_gets_everything(connect):
    """Many writers interleaving with a reader: every committed event is read exactly once, none lost."""
    reader = connect()
    writers = [connect() for _ in range(4)]
    seen = Recorder()
    open_txs = []
    expected = []
    for round_ in range(5):
        for n, w in enumerate(writers):
            tx = w.transaction()
            tx.__enter__()
            key = f"r{round_}w{n}"
            _insert_event(w, key)
            expected.append(key)
            open_txs.append(tx)
        # Commit in reverse order, reading between each commit.
        while open_txs:
            open_txs.pop().__exit__(None, None, None)
            consume_all(reader, "test", seen, batch_size=2)
    assert sorted(seen.seen) == sorted(expected)
    assert len(seen.seen) == len(set(seen.seen))


def test_a_non_autocommit_connection_is_refused(db_url):
    with psycopg.connect(db_url) as conn, pytest.raises(ValueError, match="autocommit"):
        consume(conn, "test", Recorder())
