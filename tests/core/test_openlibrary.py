"""The Open Library client against a real local HTTP server: parsing, the Postgres cache, retries, pacing, timeouts."""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from covr_core.platform.db import open_pool
from covr_core.identification.openlibrary import OpenLibraryClient, OpenLibraryError, OpenLibraryUnavailable, RateLimiter

ISBN = "9780306406157"
OTHER_ISBNS = ["9780439023481", "9780439420891", "9780747532699", "9780451524935"]


def edition(isbn: str, **overrides) -> dict:
    """An answer shaped like /api/books?bibkeys=ISBN:...&format=json&jscmd=data."""
    entry = {
        "url": "https://openlibrary.org/books/OL7353617M/Signal_processing",
        "key": "/books/OL7353617M",
        "title": "Signal processing",
        "subtitle": "theory and practice",
        "authors": [{"url": "https://openlibrary.org/authors/OL1A", "name": "Jane Doe"}, {"name": "John  Roe"}],
        "number_of_pages": 312,
        "publishers": [{"name": "Plenum Press"}],
        "publish_date": "March 1985",
        "subjects": [{"name": f"Subject {i}", "url": "https://openlibrary.org/subjects/x"} for i in range(14)],
        "languages": [{"key": "/languages/eng"}],
    }
    entry.update(overrides)
    return {f"ISBN:{isbn}": entry}


@dataclass
class Reply:
    status: int = 200
    body: object = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0


class FakeOpenLibrary:
    """Scripted answers per ISBN (the last one repeats) and a log of every request received."""

    def __init__(self):
        self.url = ""
        self.replies: dict[str, list[Reply]] = {}
        self.requests: list[tuple[float, dict[str, list[str]], dict[str, str]]] = []
        self._lock = threading.Lock()

    def answer(self, isbn: str, *replies: Reply) -> None:
        self.replies[isbn] = list(replies)

    def requests_for(self, isbn: str) -> list[float]:
        return [at for at, query, _ in self.requests if query.get("bibkeys") == [f"ISBN:{isbn}"]]

    def next_reply(self, query: dict[str, list[str]], headers: dict[str, str]) -> Reply:
        with self._lock:
            self.requests.append((time.monotonic(), query, headers))
            isbn = query.get("bibkeys", [""])[0].removeprefix("ISBN:")
            script = self.replies.get(isbn, [Reply()])
            return script.pop(0) if len(script) > 1 else script[0]


@pytest.fixture
def ol():
    fake = FakeOpenLibrary()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            parts = urlsplit(self.path)
            if parts.path != "/api/books":
                self.send_error(404)
                return
            reply = fake.next_reply(parse_qs(parts.query), dict(self.headers))
            time.sleep(reply.delay_s)
            payload = json.dumps(reply.body).encode()
            try:
                self.send_response(reply.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(payload)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up waiting: that is what the timeout test wants

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    # A short poll interval: shutdown() waits for the serving loop to notice, 0.5 s by default.
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    yield fake
    server.shutdown()
    server.server_close()


def client(ol, conn=None, **kwargs) -> OpenLibraryClient:
    kwargs = {"min_interval_s": 0.0, "timeout_s": 2.0, "backoff_s": 0.01} | kwargs
    return OpenLibraryClient(ol.url + "/", db=conn, **kwargs)


def cached(conn, isbn: str):
    return conn.execute("select http_status, body from ingest.openlibrary_cache where isbn13 = %s", (isbn,)).fetchone()


def test_an_edition_is_parsed_into_a_book_record(conn, ol):
    ol.answer(ISBN, Reply(body=edition(ISBN)))
    with client(ol, conn) as c:
        book = c.lookup("0-306-40615-2")  # an ISBN-10 is looked up as its ISBN-13

    assert book.isbn13 == ISBN
    assert book.title == "Signal processing: theory and practice"
    assert book.authors == ["Jane Doe", "John Roe"]
    assert book.published_year == 1985
    assert book.language == "en"
    assert book.tags == [f"Subject {i}" for i in range(10)]
    ((_, query, headers),) = ol.requests
    assert query == {"bibkeys": [f"ISBN:{ISBN}"], "format": ["json"], "jscmd": ["data"]}
    assert headers["User-Agent"].startswith("Covr/")


def test_a_cached_answer_makes_no_second_request(conn, ol):
    ol.answer(ISBN, Reply(body=edition(ISBN)))
    first = client(ol, conn).lookup(ISBN)
    second = client(ol, conn).lookup(ISBN)  # a new client: the cache is the database, not the object

    assert first == second
    assert len(ol.requests) == 1
    row = cached(conn, ISBN)
    assert row["http_status"] == 200
    assert row["body"][f"ISBN:{ISBN}"]["title"] == "Signal processing"


@pytest.mark.parametrize("reply", [Reply(200, {}), Reply(404, {"error": "notfound"})], ids=["empty", "404"])
def test_not_found_is_cached_too(conn, ol, reply):
    ol.answer(ISBN, reply)
    c = client(ol, conn)

    assert c.lookup(ISBN) is None
    assert c.lookup(ISBN) is None
    assert len(ol.requests) == 1
    assert cached(conn, ISBN)["http_status"] == reply.status


def test_a_stale_not_found_is_asked_again(conn, ol):
    ol.answer(ISBN, Reply(200, {}), Reply(body=edition(ISBN)))
    c = client(ol, conn, negative_ttl=timedelta(days=30))
    assert c.lookup(ISBN) is None
    conn.execute("update ingest.openlibrary_cache set fetched_at = now() - interval '31 days'")

    assert c.lookup(ISBN).title.startswith("Signal processing")
    assert len(ol.requests) == 2
    assert cached(conn, ISBN)["http_status"] == 200


def test_503_then_200_is_retried(ol):
    ol.answer(ISBN, Reply(503, {"error": "busy"}), Reply(body=edition(ISBN)))
    assert client(ol).lookup(ISBN).authors == ["Jane Doe", "John Roe"]
    assert len(ol.requests) == 2


def test_429_waits_as_long_as_retry_after_says(ol):
    ol.answer(ISBN, Reply(429, {}, {"Retry-After": "1"}), Reply(body=edition(ISBN)))
    assert client(ol).lookup(ISBN) is not None
    first, second = ol.requests_for(ISBN)
    assert second - first >= 1.0


def test_a_retry_after_beyond_the_limit_fails_at_once(ol):
    ol.answer(ISBN, Reply(429, {}, {"Retry-After": "3600"}))
    with pytest.raises(OpenLibraryUnavailable, match="asks to wait 3600 s"):
        client(ol, max_retry_after_s=60).lookup(ISBN)
    assert len(ol.requests) == 1


def test_retries_run_out_and_nothing_is_cached(conn, ol):
    ol.answer(ISBN, Reply(503, {}))
    with pytest.raises(OpenLibraryUnavailable, match=rf"ISBN {ISBN} at 127\.0\.0\.1:\d+ failed: HTTP 503.*3 attempts"):
        client(ol, conn, retries=2).lookup(ISBN)
    assert len(ol.requests) == 3
    assert cached(conn, ISBN) is None


def test_a_client_error_is_not_retried(ol):
    ol.answer(ISBN, Reply(403, {}))
    with pytest.raises(OpenLibraryError, match="HTTP 403"):
        client(ol).lookup(ISBN)
    assert len(ol.requests) == 1


def test_a_timeout_names_the_isbn_and_the_host(conn, ol):
    ol.answer(ISBN, Reply(body=edition(ISBN), delay_s=1.5))
    c = client(ol, conn, timeout_s=0.2, retries=1)
    with pytest.raises(OpenLibraryUnavailable) as err:
        c.lookup(ISBN)
    host = ol.url.removeprefix("http://")
    assert f"ISBN {ISBN}" in str(err.value)
    assert host in str(err.value)
    assert "timed out after 0.2 s" in str(err.value)
    assert len(ol.requests) == 2
    assert cached(conn, ISBN) is None


def test_requests_from_several_threads_are_spaced_by_the_interval(db_url, ol):
    interval = 0.2
    for isbn in OTHER_ISBNS:
        ol.answer(isbn, Reply(body=edition(isbn)))
    sent: list[float] = []
    http = httpx.Client(event_hooks={"request": [lambda request: sent.append(time.monotonic())]})
    pool = open_pool(db_url, max_size=4)
    try:
        c = client(ol, pool, min_interval_s=interval, http=http)
        with ThreadPoolExecutor(max_workers=4) as threads:
            books = list(threads.map(c.lookup, OTHER_ISBNS))
    finally:
        pool.close()
        http.close()

    assert [b.isbn13 for b in books] == OTHER_ISBNS
    assert len(ol.requests) == len(sent) == 4
    sent.sort()
    # The hook runs a moment after the limiter lets a request go; on a busy machine that moment can stretch, so
    # allow 20 ms (without the limiter the gaps would be ~0). The limiter itself is held to the exact interval below.
    assert all(b - a >= interval - 0.02 for a, b in zip(sent, sent[1:], strict=False)), sent


def test_rate_limiter_releases_are_at_least_the_interval_apart():
    limiter = RateLimiter(0.05)
    with ThreadPoolExecutor(max_workers=4) as threads:
        releases = sorted(threads.map(lambda _: limiter.wait(), range(6)))
    assert all(b - a >= 0.05 for a, b in zip(releases, releases[1:], strict=False)), releases


def test_an_edition_without_a_title_is_not_a_book(ol):
    ol.answer(ISBN, Reply(body=edition(ISBN, title="", subtitle="")))
    assert client(ol).lookup(ISBN) is None


def test_without_a_database_every_lookup_asks(ol):
    ol.answer(ISBN, Reply(body=edition(ISBN)))
    c = client(ol)
    c.lookup(ISBN)
    c.lookup(ISBN)
    assert len(ol.requests) == 2


def test_a_non_isbn_is_refused_before_any_request(ol):
    with pytest.raises(ValueError, match="'12345' is not one"):
        client(ol).lookup("12345")
    assert ol.requests == []
