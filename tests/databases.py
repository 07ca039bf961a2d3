"""Databases of a test's own on the session's embedded server: cloned from the migrated template, dropped after."""

from __future__ import annotations

import itertools
import os
from contextlib import contextmanager

import psycopg

_counter = itertools.count()


def with_database(url: str, name: str) -> str:
    """url, pointing at database `name` instead."""
    base, _, query = url.partition("?")
    return f"{base.rsplit('/', 1)[0]}/{name}" + (f"?{query}" if query else "")


@contextmanager
def scratch_database(admin_url: str, prefix: str, template: str | None = None):
    """A database of its own for a test or a module, dropped afterwards; yields its URL."""
    name = f"{prefix}_{os.getpid()}_{next(_counter)}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f"create database {name}" + (f" template {template}" if template else ""))
    try:
        yield with_database(admin_url, name)
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f"drop database if exists {name} with (force)")
