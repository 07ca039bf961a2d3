"""Open Library edition lookups by ISBN: rate-limited, retried with backoff, and cached in ingest.openlibrary_cache."""

from __future__ import annotations

import email.utils
import logging
import re
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx
import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool
from pydantic import ValidationError

from covr_core.catalog.books import MAX_YEAR, MIN_YEAR, BookRecord, normalize_language
from covr_core.shared.isbn import normalize_isbn

__all__ = ["OpenLibraryClient", "OpenLibraryError", "OpenLibraryUnavailable", "RateLimiter"]

log = logging.getLogger(__name__)

# Where the cache lives: a pool, one connection, or anything that opens a connection as a context manager.
DbSource = ConnectionPool | psycopg.Connection | Callable[[], AbstractContextManager[psycopg.Connection]]

MAX_TAGS = 10  # Open Library lists dozens of subjects for popular books; the first ones are the useful ones


class OpenLibraryError(RuntimeError):
    """Open Library gave an answer this client cannot use; the message names the ISBN and the host."""


class OpenLibraryUnavailable(OpenLibraryError):
    """Open Library did not answer usefully within the retries (timeouts, 429, 5xx): try again later."""


class RateLimiter:
    """Spaces calls at least `min_interval_s` apart across threads; `defer` pushes the next slot (Retry-After)."""

    def __init__(self, min_interval_s: float):
        self.min_interval_s = min_interval_s
        self._lock = threading.Lock()
        self._next_at = 0.0

    def wait(self) -> float:
        """Block until this caller may go; returns that moment (time.monotonic)."""
        # The lock is held while sleeping on purpose: waiting threads queue up, and the next slot is measured from
        # when this call really went out, so oversleeping can never shorten the gap to the next one.
        with self._lock:
            delay = self._next_at - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            now = time.monotonic()
            self._next_at = now + self.min_interval_s
            return now

    def defer(self, seconds: float) -> None:
        with self._lock:
            self._next_at = max(self._next_at, time.monotonic() + seconds)


class OpenLibraryClient:
    """Looks up editions at `{base_url}/api/books`; built by the caller only when Open Library is configured.

    `db` holds the cache (ingest.openlibrary_cache): a psycopg pool, a connection (used inside a transaction or
    savepoint of its own; one thread at a time, so pass a pool when lookups run in threads), or a callable
    returning a connection context manager; None means no cache. No connection is held while waiting on the
    network. Found answers are kept for good; "not found" answers are reused for `negative_ttl`, since Open
    Library keeps adding editions. Transient failures (429, 5xx, timeouts) are never cached.
    """

    def __init__(
        self,
        base_url: str,
        *,
        db: DbSource | None = None,
        min_interval_s: float = 1.0,
        timeout_s: float = 5.0,
        retries: int = 3,
        backoff_s: float = 1.0,
        max_retry_after_s: float = 60.0,
        negative_ttl: timedelta | None = timedelta(days=30),
        user_agent: str = "Covr/0.1 (book-sharing catalog; Open Library lookups by ISBN)",
        http: httpx.Client | None = None,
    ):
        self.base_url = base_url.rstrip("/")
        self.host = urlsplit(self.base_url).netloc or self.base_url
        self.timeout_s = timeout_s
        self.retries = retries
        self.backoff_s = backoff_s
        self.max_retry_after_s = max_retry_after_s
        self.negative_ttl = negative_ttl
        self._db = db
        self._limiter = RateLimiter(min_interval_s)
        self._owns_http = http is None
        # Open Library asks API users to identify themselves with a User-Agent.
        self._http = http or httpx.Client(timeout=timeout_s, headers={"User-Agent": user_agent})

    def close(self) -> None:
        if self._owns_http:
            self._http.close()

    def __enter__(self) -> OpenLibraryClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def lookup(self, isbn13: str) -> BookRecord | None:
        """The edition for an ISBN, or None when Open Library does not know it (or knows it without a title).

        Raises ValueError for a string that is not an ISBN, OpenLibraryUnavailable when retries run out, and
        OpenLibraryError for any other unusable answer.
        """
        isbn = normalize_isbn(isbn13)
        if isbn is None:
            raise ValueError(f"Open Library lookup needs an ISBN; {isbn13!r} is not one")
        cached = self._cache_get(isbn)
        if cached is not None:
            status, body = cached
        else:
            status, body = self._fetch(isbn)
            self._cache_put(isbn, status, body)
        return self._record(isbn, status, body)

    # --- HTTP ------------------------------------------------------------------------------------------------------

    def _fetch(self, isbn: str) -> tuple[int, Any]:
        params = {"bibkeys": f"ISBN:{isbn}", "format": "json", "jscmd": "data"}
        what = f"Open Library lookup for ISBN {isbn} at {self.host}"
        attempt = 0
        while True:
            self._limiter.wait()
            retry_after: float | None = None
            try:
                response = self._http.get(f"{self.base_url}/api/books", params=params, timeout=self.timeout_s)
            except httpx.TimeoutException:
                failure = f"timed out after {self.timeout_s:g} s"
            except httpx.TransportError as exc:
                failure = f"failed to connect ({type(exc).__name__}: {exc})"
            else:
                status = response.status_code
                if status == 200:
                    try:
                        return 200, response.json()
                    except ValueError as exc:
                        raise OpenLibraryError(f"{what}: HTTP 200 with a body that is not JSON") from exc
                if status == 404:
                    return 404, None
                if status != 429 and status < 500:
                    raise OpenLibraryError(f"{what}: HTTP {status} {response.reason_phrase}")
                failure = f"HTTP {status} {response.reason_phrase}"
                retry_after = _retry_after_s(response.headers.get("Retry-After"))

            if attempt >= self.retries:
                raise OpenLibraryUnavailable(f"{what} failed: {failure} (gave up after {attempt + 1} attempts)")
            delay = self.backoff_s * 2**attempt
            if retry_after is not None:
                if retry_after > self.max_retry_after_s:
                    raise OpenLibraryUnavailable(
                        f"{what} failed: {failure}, and the server asks to wait {retry_after:g} s "
                        f"(more than the {self.max_retry_after_s:g} s this client waits)"
                    )
                delay = max(delay, retry_after)
            # Through the limiter, so every thread backs off, not just this one.
            self._limiter.defer(delay)
            log.info("%s: %s; retrying in %.2f s", what, failure, delay)
            attempt += 1

    # --- cache -----------------------------------------------------------------------------------------------------

    @contextmanager
    def _connection(self):
        db = self._db
        if isinstance(db, ConnectionPool):
            with db.connection() as conn:
                yield conn
        elif isinstance(db, psycopg.Connection):
            with db.transaction():
                yield db
        else:
            with db() as conn:
                yield conn

    def _cache_get(self, isbn: str) -> tuple[int, Any] | None:
        if self._db is None:
            return None
        with self._connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            row = cur.execute(
                "select http_status, body, fetched_at from ingest.openlibrary_cache where isbn13 = %s", (isbn,)
            ).fetchone()
        if row is None:
            return None
        if self._is_not_found(isbn, row["http_status"], row["body"]) and self.negative_ttl is not None:
            if row["fetched_at"] < datetime.now(UTC) - self.negative_ttl:
                return None
        return row["http_status"], row["body"]

    def _cache_put(self, isbn: str, status: int, body: Any) -> None:
        if self._db is None:
            return
        with self._connection() as conn:
            conn.execute(
                """
                insert into ingest.openlibrary_cache (isbn13, http_status, body) values (%s, %s, %s)
                on conflict (isbn13) do update
                    set http_status = excluded.http_status, body = excluded.body, fetched_at = now()
                """,
                (isbn, status, Jsonb(body) if body is not None else None),
            )

    # --- parsing ---------------------------------------------------------------------------------------------------

    @staticmethod
    def _is_not_found(isbn: str, status: int, body: Any) -> bool:
        return status != 200 or not isinstance(body, dict) or not body.get(f"ISBN:{isbn}")

    def _record(self, isbn: str, status: int, body: Any) -> BookRecord | None:
        if self._is_not_found(isbn, status, body):
            return None
        entry = body[f"ISBN:{isbn}"]
        if not isinstance(entry, dict):
            raise OpenLibraryError(f"Open Library answer for ISBN {isbn} at {self.host} is not an object: {entry!r}")
        title = _text(entry.get("title"))
        subtitle = _text(entry.get("subtitle"))
        if title and subtitle:
            title = f"{title}: {subtitle}"
        languages = [lang.get("key", "").rsplit("/", 1)[-1] for lang in _dicts(entry.get("languages"))]
        try:
            return BookRecord(
                isbn13=isbn,
                title=title,
                authors=[name for a in _dicts(entry.get("authors")) if (name := _text(a.get("name")))],
                published_year=_year(entry.get("publish_date")),
                language=next((code for lang in languages if (code := normalize_language(lang))), None),
                tags=[name for s in _dicts(entry.get("subjects")) if (name := _text(s.get("name")))][:MAX_TAGS],
            )
        except ValidationError as exc:
            log.warning("Open Library edition for ISBN %s is unusable: %s", isbn, exc.errors()[0]["msg"])
            return None


def _dicts(value: Any) -> list[dict]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _text(value: Any) -> str:
    return " ".join(value.split()) if isinstance(value, str) else ""


def _year(publish_date: Any) -> int | None:
    """The year in Open Library's free-text dates: "1998", "March 1998", "Mar 03, 1998", "c1998"."""
    if not isinstance(publish_date, str):
        return None
    for match in re.finditer(r"(?<!\d)(\d{4})(?!\d)", publish_date):
        year = int(match.group(1))
        if MIN_YEAR <= year <= MAX_YEAR:
            return year
    return None


def _retry_after_s(value: str | None) -> float | None:
    """Retry-After as seconds: either a number of seconds or an HTTP date."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())
