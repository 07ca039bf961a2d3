"""The Meilisearch adapter: index `copies`, exact idempotent settings, sized batches, every task awaited.

Visibility travels as a filter on every search (owner, holder, and the viewer's accepted contacts as holders outside
the statuses hidden from contacts), built from covr_core.catalog.copies' rule, so no query can reach another member's
copies. A reindex fills `copies_next` and swaps it with `copies` in one Meilisearch task.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from typing import Any

import httpx
import psycopg

from covr_core.catalog.copies import HIDDEN_FROM_CONTACTS
from covr_core.search.backend import (
    MAX_FACET_VALUES,
    MAX_TOTAL_HITS,
    Connect,
    ReindexReport,
    Scope,
    SearchBackend,
    SearchRequest,
    SearchResult,
    SyncReport,
)
from covr_core.search.document import FIELDS, FILTERABLE, SEARCHABLE, SORTABLE, iter_model_documents, model_rows
from covr_core.search.embedded import SYNC_LOCK_KEY
from covr_core.search.query import ONE_TYPO_FROM, TWO_TYPOS_FROM, to_meili

INDEX = "copies"
PRIMARY_KEY = "copy_id"
# Sort right after typo, as the embedded backend does; relevance among equals after that.
RANKING_RULES = ["words", "typo", "sort", "proximity", "attribute", "exactness"]
SETTINGS: dict[str, Any] = {
    "filterableAttributes": list(FILTERABLE),
    "sortableAttributes": list(SORTABLE),
    "searchableAttributes": list(SEARCHABLE),
    "rankingRules": RANKING_RULES,
    "typoTolerance": {"enabled": True, "minWordSizeForTypos": {"oneTypo": ONE_TYPO_FROM, "twoTypos": TWO_TYPOS_FROM}},
    "faceting": {"maxValuesPerFacet": MAX_FACET_VALUES, "sortFacetValuesBy": {"*": "count"}},
    "pagination": {"maxTotalHits": MAX_TOTAL_HITS},
}
DEFAULT_BATCH = 1000


class MeiliError(RuntimeError):
    """Meilisearch refused a request or a task failed; the message names the task, the index and Meilisearch's code."""


def _differs(wanted: Any, current: Any) -> bool:
    """Whether the current value lacks what we want (Meilisearch returns more keys than we set, and filterable and
    sortable attributes come back sorted)."""
    if isinstance(wanted, dict):
        return not isinstance(current, dict) or any(_differs(v, current.get(k)) for k, v in wanted.items())
    return wanted != current


def settings_changes(current: dict[str, Any]) -> dict[str, Any]:
    """The part of SETTINGS the index does not have yet: empty when it is exactly as wanted."""
    changes = {}
    for key, wanted in SETTINGS.items():
        have = current.get(key)
        if key in ("filterableAttributes", "sortableAttributes"):
            if sorted(wanted) != sorted(have or []):
                changes[key] = wanted
        elif _differs(wanted, have):
            changes[key] = wanted
    return changes


def visibility_filter(scope: Scope) -> str | None:
    """covr_core.catalog.copies' rule as a Meilisearch filter: none for an operator's search."""
    if scope.is_everything:
        return None
    viewer = f'"{scope.viewer_id}"'
    parts = [f"owner_id = {viewer}", f"current_holder_id = {viewer}"]
    if scope.contact_ids:
        holders = ", ".join(f'"{c}"' for c in scope.contact_ids)
        hidden = ", ".join(f'"{s}"' for s in HIDDEN_FROM_CONTACTS)
        parts.append(f"(current_holder_id IN [{holders}] AND status NOT IN [{hidden}])")
    return "(" + " OR ".join(parts) + ")"


class MeiliSearch(SearchBackend):
    name = "meilisearch"

    def __init__(
        self,
        url: str,
        *,
        api_key: str | None = None,
        index: str = INDEX,
        connect: Connect | None = None,
        batch_size: int = DEFAULT_BATCH,
        timeout_s: float = 10.0,
        task_timeout_s: float = 120.0,
        poll_s: float = 0.05,
        client: httpx.Client | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = client or httpx.Client(base_url=url.rstrip("/"), headers=headers, timeout=timeout_s)
        self.url = url
        self.index = index
        self.next_index = f"{index}_next"
        self._connect = connect
        self.batch_size = batch_size
        self.task_timeout_s = task_timeout_s
        self.poll_s = poll_s

    def describe(self) -> str:
        return f"Meilisearch {self.url} index {self.index}"

    # --- HTTP and tasks ------------------------------------------------------------------------------------------

    def _request(self, method: str, path: str, *, what: str, ok=(200, 201, 202), **kw) -> httpx.Response:
        try:
            response = self._http.request(method, path, **kw)
        except httpx.HTTPError as exc:
            raise MeiliError(
                f"Meilisearch at {self.url} unreachable while {what}: {type(exc).__name__}: {exc}") from exc
        if response.status_code not in ok:
            raise MeiliError(f"Meilisearch refused {method} {path} while {what}: HTTP {response.status_code} "
                             f"{_reason(response)}")
        return response

    def _task(self, response: httpx.Response, *, what: str) -> dict[str, Any]:
        """Wait for the task a write enqueued; MeiliError names it and its index if it failed or took too long."""
        body = response.json()
        uid = body.get("taskUid", body.get("uid"))
        index = body.get("indexUid")
        deadline = time.monotonic() + self.task_timeout_s
        pause = self.poll_s
        while True:
            task = self._request("GET", f"/tasks/{uid}", what=f"waiting for task {uid} ({what})").json()
            status = task.get("status")
            if status == "succeeded":
                return task
            if status in ("failed", "canceled"):
                error = task.get("error") or {}
                raise MeiliError(
                    f"Meilisearch task {uid} ({task.get('type', what)}) on index {task.get('indexUid', index)} "
                    f"{status}: {error.get('code', 'unknown')}: {error.get('message', 'no reason given')}")
            if time.monotonic() > deadline:
                raise MeiliError(f"Meilisearch task {uid} ({what}) on index {index} still {status} after "
                                 f"{self.task_timeout_s:.0f} s")
            time.sleep(pause)
            pause = min(pause * 2, 1.0)

    def _exists(self, index: str) -> bool:
        return self._request("GET", f"/indexes/{index}", what=f"looking up index {index}", ok=(200, 404)
                             ).status_code == 200

    def _create(self, index: str) -> None:
        self._task(self._request("POST", "/indexes", json={"uid": index, "primaryKey": PRIMARY_KEY},
                                 what=f"creating index {index}"), what=f"create index {index}")

    def apply_settings(self, index: str | None = None) -> dict[str, Any]:
        """Make the index's settings exactly SETTINGS; sends nothing when they already are. Returns what changed."""
        index = index or self.index
        current = self._request("GET", f"/indexes/{index}/settings", what=f"reading settings of {index}").json()
        changes = settings_changes(current)
        if changes:
            self._task(self._request("PATCH", f"/indexes/{index}/settings", json=changes,
                                     what=f"updating settings of {index}"), what=f"settings of {index}")
        return changes

    def ensure(self, index: str | None = None) -> None:
        index = index or self.index
        if not self._exists(index):
            self._create(index)
        self.apply_settings(index)

    def _push(self, index: str, documents: Sequence[dict[str, Any]]) -> int:
        for start in range(0, len(documents), self.batch_size):
            batch = documents[start:start + self.batch_size]
            self._task(self._request("POST", f"/indexes/{index}/documents", params={"primaryKey": PRIMARY_KEY},
                                     json=list(batch), what=f"adding {len(batch)} document(s) to {index}"),
                       what=f"documents into {index}")
        return len(documents)

    def _delete(self, index: str, copy_ids: Sequence[str]) -> int:
        for start in range(0, len(copy_ids), self.batch_size):
            batch = list(copy_ids[start:start + self.batch_size])
            self._task(self._request("POST", f"/indexes/{index}/documents/delete-batch", json=batch,
                                     what=f"deleting {len(batch)} document(s) from {index}"),
                       what=f"deletions from {index}")
        return len(copy_ids)

    # --- the interface -------------------------------------------------------------------------------------------

    def search(self, request: SearchRequest, scope: Scope) -> SearchResult:
        started = time.perf_counter()
        filters = [f for f in (visibility_filter(scope), to_meili(request.filter) if request.filter else None) if f]
        body: dict[str, Any] = {
            "q": request.query.text,
            "limit": request.limit,
            "offset": request.offset,
            "attributesToRetrieve": list(FIELDS),
        }
        if filters:
            body["filter"] = " AND ".join(filters)
        sort = [s.meili() for s in request.sort] or (["created_at:desc"] if request.query.is_placeholder else [])
        if sort:
            body["sort"] = sort
        if request.facets:
            body["facets"] = list(request.facets)
        data = self._request("POST", f"/indexes/{self.index}/search", json=body, what=f"searching {self.index}").json()
        hits = [{f: h.get(f) for f in FIELDS} for h in data.get("hits", [])]
        return SearchResult(hits=hits, total=int(data.get("estimatedTotalHits", data.get("totalHits", len(hits)))),
                            facets=data.get("facetDistribution") or {}, backend=self.name,
                            took_ms=(time.perf_counter() - started) * 1000)

    def apply(self, conn: psycopg.Connection, copy_ids: Sequence[str]) -> SyncReport:
        ids = sorted({str(i) for i in copy_ids})
        if not ids:
            return SyncReport()
        documents = model_rows(conn, ids)
        present = {d["copy_id"] for d in documents}
        gone = [i for i in ids if i not in present]
        return SyncReport(upserted=self._push(self.index, documents), deleted=self._delete(self.index, gone))

    def reindex(self, connect: Connect | None = None) -> ReindexReport:
        """Fill `copies_next` from one snapshot of the model, then swap it with `copies` in one task."""
        connect = connect or self._connect
        if connect is None:
            raise ValueError("a Meilisearch reindex reads the SQL model: give it a connection factory")
        started = time.perf_counter()
        with connect() as lock_conn:
            lock_conn.execute("select pg_advisory_lock(%s)", (SYNC_LOCK_KEY,))
            try:
                if not self._exists(self.index):
                    self._create(self.index)
                    self.apply_settings(self.index)
                if self._exists(self.next_index):
                    self._task(self._request("DELETE", f"/indexes/{self.next_index}",
                                             what=f"dropping the leftover {self.next_index}"),
                               what=f"delete {self.next_index}")
                self._create(self.next_index)
                self.apply_settings(self.next_index)
                documents = 0
                with connect() as conn:
                    for chunk in iter_model_documents(conn, batch=self.batch_size):
                        documents += self._push(self.next_index, chunk)
                self._task(self._request("POST", "/swap-indexes",
                                         json=[{"indexes": [self.index, self.next_index]}],
                                         what=f"swapping {self.next_index} into {self.index}"),
                           what=f"swap {self.index}")
                # After the swap the next index holds the old documents.
                self._task(self._request("DELETE", f"/indexes/{self.next_index}",
                                         what=f"dropping the old {self.next_index}"), what=f"delete {self.next_index}")
            finally:
                lock_conn.execute("select pg_advisory_unlock(%s)", (SYNC_LOCK_KEY,))
        return ReindexReport(documents=documents, seconds=time.perf_counter() - started,
                             target=f"Meilisearch index {self.index}")

    def is_built(self) -> bool:
        return self._exists(self.index)

    def count(self) -> int:
        stats = self._request("GET", f"/indexes/{self.index}/stats", what=f"counting {self.index}").json()
        return int(stats["numberOfDocuments"])

    def documents(self, copy_ids: Iterable[str]) -> list[dict[str, Any]]:
        out = []
        for copy_id in sorted(str(i) for i in copy_ids):
            response = self._request("GET", f"/indexes/{self.index}/documents/{copy_id}",
                                     what=f"reading document {copy_id}", ok=(200, 404))
            if response.status_code == 200:
                doc = response.json()
                out.append({f: doc.get(f) for f in FIELDS})
        return out


def _reason(response: httpx.Response) -> str:
    try:
        body = response.json()
        return f"{body.get('code', '')}: {body.get('message', '')}".strip(": ")
    except ValueError:
        return response.text[:200]
