"""The ledger hooks run in the transaction of the change they record: a failed append rolls the change back."""

from __future__ import annotations

import psycopg
import pytest

from covr_core.catalog import copies
from covr_core.exchange import circulation, requests
from covr_core.ledger import chain, hooks, verify


def count(conn, table: str) -> int:
    return conn.execute(f"select count(*) as n from {table}").fetchone()["n"]


def befriend(conn, a, b):
    conn.execute("insert into contact.link (user_id, contact_id, status) values (%s, %s, 'accepted')", (a, b))


def test_a_failed_append_rolls_the_transition_back(aconn, people, copy_id, monkeypatch):
    befriend(aconn, people["alice"], people["bob"])

    def refuse(*args, **kwargs):
        raise chain.LedgerContention("the ledger is busy")

    monkeypatch.setattr(chain, "append", refuse)
    with pytest.raises(chain.LedgerContention):
        requests.create(aconn, requester_id=people["bob"], copy_id=copy_id)
    with pytest.raises(chain.LedgerContention):
        circulation.withdraw(aconn, user_id=people["alice"], copy_id=copy_id)
    assert (count(aconn, "exchange.request"), count(aconn, "outbox.event"), count(aconn, "ledger.entry")) == (0, 0, 0)
    assert aconn.execute("select status from catalog.copy where copy_id = %s", (copy_id,)).fetchone()["status"] \
        == "available"


def test_each_transition_appends_one_entry_that_verifies(aconn, people, copy_id):
    befriend(aconn, people["alice"], people["bob"])
    request = requests.create(aconn, requester_id=people["bob"], copy_id=copy_id)
    requests.cancel(aconn, user_id=people["bob"], request_id=request.request_id)
    circulation.withdraw(aconn, user_id=people["alice"], copy_id=copy_id)
    circulation.mark_lost(aconn, user_id=people["alice"], copy_id=copy_id)
    types = [r["entry_type"] for r in aconn.execute(
        "select entry_type from ledger.entry where copy_id = %s order by seq", (copy_id,))]
    assert types == ["request_created", "request_cancelled", "copy_withdrawn", "copy_lost"]
    assert verify.verify(aconn).ok


def test_a_hook_outside_a_transaction_is_a_bug(aconn, people, copy_id):
    with pytest.raises(RuntimeError, match="outside a transaction"):
        hooks.on_copy_withdrawn(aconn, copy_id=copy_id, owner_id=people["alice"], status_before="available")


def test_a_copy_cannot_leave_circulation_without_its_ledger_entry(aconn, people, copy_id):
    # Catalog's own functions, called without exchange.circulation's ledger hook, and plain SQL: the database
    # refuses the status at commit (a deferred constraint trigger), and nothing changes.
    with pytest.raises(psycopg.errors.CheckViolation, match="withdrawn without a copy_withdrawn entry"):
        copies.withdraw_copy(aconn, user_id=people["alice"], copy_id=copy_id)
    with pytest.raises(psycopg.errors.CheckViolation, match="lost without a copy_lost entry"):
        aconn.execute("update catalog.copy set status = 'lost' where copy_id = %s", (copy_id,))
    assert (count(aconn, "outbox.event"), count(aconn, "ledger.entry")) == (0, 0)
    assert aconn.execute("select status from catalog.copy where copy_id = %s", (copy_id,)).fetchone()["status"] \
        == "available"
    circulation.withdraw(aconn, user_id=people["alice"], copy_id=copy_id)
    with pytest.raises(psycopg.errors.CheckViolation, match="lost without a copy_lost entry"):
        copies.mark_copy_lost(aconn, user_id=people["alice"], copy_id=copy_id)
    circulation.mark_lost(aconn, user_id=people["alice"], copy_id=copy_id)
    assert verify.verify(aconn).ok
