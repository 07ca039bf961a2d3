"""A local HTTP server that speaks the slice of Meilisearch's API the adapter uses, and records every request.

It is the fake behind the contract tests (tests/core/test_search_meili.py); the same adapter runs against a real
Meilisearch in the integration tests when MEILI_URL is set. Tasks run at once but report `processing` on their
first poll, so an adapter that does not wait for `succeeded` is caught.
"""

from __future__ import annotations

import copy
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

DEFAULT_SETTINGS = {
    "displayedAttributes": ["*"], "searchableAttributes": ["*"], "filterableAttributes": [],
    "sortableAttributes": [], "rankingRules": ["words", "typo", "proximity", "attribute", "sort", "exactness"],
    "stopWords": [], "synonyms": {}, "distinctAttribute": None,
    "typoTolerance": {"enabled": True, "minWordSizeForTypos": {"oneTypo": 5, "twoTypos": 9}, "disableOnWords": [],
                      "disableOnAttributes": []},
    "faceting": {"maxValuesPerFacet": 100, "sortFacetValuesBy": {"*": "alpha"}},
    "pagination": {"maxTotalHits": 1000},
}


@dataclass
class Recorded:
    method: str
    path: str
    query: dict
    body: object


@dataclass
class FakeMeili:
    indexes: dict = field(default_factory=dict)
    tasks: dict = field(default_factory=dict)
    requests: list = field(default_factory=list)
    fail_types: set = field(default_factory=set)  # task types that fail
    polls: dict = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def paths(self, method: str | None = None) -> list[str]:
        return [f"{r.method} {r.path}" for r in self.requests if method is None or r.method == method]

    def _task(self, kind: str, index: str | None, apply) -> tuple[int, dict]:
        uid = len(self.tasks)
        task = {"uid": uid, "indexUid": index, "type": kind, "status": "succeeded"}
        if kind in self.fail_types:
            task |= {"status": "failed", "error": {"code": "invalid_document_fields", "message": "boom",
                                                   "type": "invalid_request"}}
        else:
            apply()
        self.tasks[uid] = task
        return 202, {"taskUid": uid, "indexUid": index, "status": "enqueued", "type": kind}

    def handle(self, method: str, path: str, query: dict, body) -> tuple[int, object]:
        parts = [p for p in path.split("/") if p]
        with self.lock:
            self.requests.append(Recorded(method, path, query, body))
            if parts[:1] == ["tasks"]:
                uid = int(parts[1])
                self.polls[uid] = self.polls.get(uid, 0) + 1
                task = dict(self.tasks[uid])
                if self.polls[uid] == 1:
                    task = {k: v for k, v in task.items() if k != "error"} | {"status": "processing"}
                return 200, task
            if parts == ["indexes"] and method == "POST":
                uid = body["uid"]
                return self._task("indexCreation", uid, lambda: self.indexes.setdefault(
                    uid, {"primaryKey": body.get("primaryKey"), "settings": copy.deepcopy(DEFAULT_SETTINGS),
                          "docs": {}}))
            if parts == ["swap-indexes"]:
                a, b = body[0]["indexes"]

                def swap():
                    self.indexes[a], self.indexes[b] = self.indexes[b], self.indexes[a]
                return self._task("indexSwap", None, swap)
            if parts[:1] != ["indexes"]:
                return 404, {"code": "not_found", "message": path}
            uid, rest = parts[1], parts[2:]
            index = self.indexes.get(uid)
            if index is None:
                return 404, {"code": "index_not_found", "message": f"Index `{uid}` not found."}
            if not rest and method == "GET":
                return 200, {"uid": uid, "primaryKey": index["primaryKey"]}
            if not rest and method == "DELETE":
                return self._task("indexDeletion", uid, lambda: self.indexes.pop(uid))
            if rest == ["settings"] and method == "GET":
                return 200, index["settings"]
            if rest == ["settings"] and method == "PATCH":
                return self._task("settingsUpdate", uid, lambda: index["settings"].update(copy.deepcopy(body)))
            if rest == ["documents"] and method == "POST":
                key = query.get("primaryKey", [index["primaryKey"]])[0]
                return self._task("documentAdditionOrUpdate", uid,
                                  lambda: index["docs"].update({d[key]: d for d in body}))
            if rest == ["documents", "delete-batch"]:
                return self._task("documentDeletion", uid,
                                  lambda: [index["docs"].pop(i, None) for i in body])
            if rest[:1] == ["documents"] and len(rest) == 2:
                doc = index["docs"].get(rest[1])
                return (200, doc) if doc else (404, {"code": "document_not_found", "message": rest[1]})
            if rest == ["stats"]:
                return 200, {"numberOfDocuments": len(index["docs"]), "isIndexing": False}
            if rest == ["search"]:
                docs = sorted(index["docs"].values(), key=lambda d: d["copy_id"])
                window = docs[body.get("offset", 0):body.get("offset", 0) + body.get("limit", 20)]
                return 200, {"hits": window, "estimatedTotalHits": len(docs), "processingTimeMs": 1,
                             "facetDistribution": {f: {} for f in body.get("facets", [])}, "query": body["q"]}
            return 404, {"code": "not_found", "message": path}


class _Handler(BaseHTTPRequestHandler):
    fake: FakeMeili

    def _serve(self):
        url = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        status, payload = self.fake.handle(self.command, url.path, parse_qs(url.query),
                                           json.loads(raw) if raw else None)
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PATCH = do_DELETE = do_PUT = _serve

    def log_message(self, *args):
        pass


def start() -> tuple[FakeMeili, str, callable]:
    fake = FakeMeili()
    handler = type("Handler", (_Handler,), {"fake": fake})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()

    def stop():
        server.shutdown()
        server.server_close()

    return fake, f"http://127.0.0.1:{server.server_address[1]}", stop
