"""Fixtures of the core tests: an autocommit connection, three members, a copy and a signing key."""

from __future__ import annotations

import psycopg
import pytest
from psycopg.rows import dict_row

from covr_core.ledger import checkpoint
from tests.core.ledger_support import make_copy, make_user


@pytest.fixture
def aconn(db_url):
    """An autocommit connection, as the API's pool hands them out."""
    with psycopg.connect(db_url, row_factory=dict_row, autocommit=True) as connection:
        yield connection


@pytest.fixture
def people(aconn):
    return {name: make_user(aconn, name) for name in ("alice", "bob", "carol")}


@pytest.fixture
def copy_id(aconn, people) -> str:
    return make_copy(aconn, people["alice"])


@pytest.fixture
def key():
    return checkpoint.load_private_key(checkpoint.generate_private_key_pem())
