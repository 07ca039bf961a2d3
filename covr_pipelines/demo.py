"""`covr demo`: the whole of Covr on generated data, through the real parts, with a summary a newcomer can read.

Sample files, the catalog import, uploads picked up by the upload sensor and ingested by the Dagster job, a
borrow over the HTTP API (request, accept, hand-over, completion), the notifications worker, a signed ledger
checkpoint and its verification. Every step is safe to repeat: a second run reuses what the first made and says so.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import httpx

from covr_core.platform.db import Database
from covr_core.platform.settings import Settings
from covr_pipelines import cli
from covr_pipelines.dev import serve
from covr_pipelines.sample_photos import DEMO_PASSWORD, DEMO_USERS, write_demo_files

# Upload ids are derived from the member and the file, so a second run names the same objects and uploads nothing.
_UPLOAD_NAMESPACE = uuid.UUID("6f0b7c1e-2a52-4c55-9d0e-3c6d2f7f8a10")
DAGSTER_UI_URL = "http://127.0.0.1:3000"
API_URL = "http://127.0.0.1:8000"
SENSOR = "new_uploads_sensor"
BORROWED_TITLE = "The Quiet Orchard"


@dataclass
class Member:
    handle: str
    user_id: str
    client: httpx.Client


@dataclass
class Uploaded:
    member: str
    file: Path
    key: str


def run_demo(settings: Settings) -> int:
    started = time.monotonic()
    demo_dir = settings.home / "demo"
    state_file = demo_dir / "state.json"
    state = json.loads(state_file.read_text()) if state_file.exists() else {}
    again = bool(state)
    print(f"{'reusing the sample catalog and photos' if again else 'generating a sample catalog and photos'} "
          f"in {demo_dir.absolute()} ...", flush=True)
    plan = write_demo_files(demo_dir)
    _step("catalog")
    cli.cmd_catalog_import(argparse.Namespace(file=plan.catalog), settings)

    db = cli._open(settings)
    try:
        api_settings = settings.model_copy(update={"database_url": db.url})
        base_url, stop = serve(api_settings)
        clients: list[httpx.Client] = []
        try:
            _step(f"members over HTTP ({base_url})")
            members = {h: _member(base_url, h, db, clients) for h in DEMO_USERS}
            _befriend(members)
            uploaded = _ingest(settings, db, plan, members, state, state_file)
            _step("a borrow over HTTP: request, accept, hand-over, completion")
            copy_id = _borrow(members["alice"], members["bob"])
            _step("notifications worker, one round")
            _notify(settings, db)
            _step("provenance ledger")
            checkpoint_line, verify_line = _ledger(settings, db)
            _summary(settings, db, members, uploaded, copy_id, checkpoint_line, verify_line)
        finally:
            for client in clients:
                client.close()
            stop()
    finally:
        db.close()
    print(f"\ndemo finished in {time.monotonic() - started:.0f} s"
          + (" (a second run: it reused what was there; nothing was counted twice)" if again else ""))
    return 0


def _step(what: str) -> None:
    print(f"\n== {what}", flush=True)


def _check(response: httpx.Response, *ok: int) -> dict:
    if response.status_code not in ok:
        raise cli.UsageError(f"{response.request.method} {response.request.url.path} answered "
                             f"{response.status_code}: {response.text[:300]}")
    return response.json() if response.content else {}


def _member(base_url: str, handle: str, db: Database, clients: list) -> Member:
    """Sign up over HTTP, or log in when the member exists; a member made by `covr ingest --as` gets a password
    through a claim code, as the operator would hand one out."""
    from covr_core.contact import accounts

    anon = httpx.Client(base_url=base_url, timeout=30.0)
    clients.append(anon)
    r = anon.post("/v1/auth/register", json={"handle": handle, "display_name": handle.title(),
                                            "email": f"{handle}@example.org", "password": DEMO_PASSWORD})
    how = "signed up"
    if r.status_code == 409:
        r, how = anon.post("/v1/auth/login", json={"handle": handle, "password": DEMO_PASSWORD}), "logged in"
        if r.status_code == 401:
            with db.connection() as conn:
                code = accounts.issue_claim_code(conn, handle)
            _check(anon.post("/v1/auth/claim", json={"handle": handle, "code": code, "password": DEMO_PASSWORD}), 200)
            how = "claimed (made earlier by `covr ingest`)"
    else:
        _check(r, 201)
    tokens = _check(anon.post("/v1/auth/login", json={"handle": handle, "password": DEMO_PASSWORD}), 200)
    client = httpx.Client(base_url=base_url, timeout=60.0,
                          headers={"Authorization": f"Bearer {tokens['access_token']}"})
    clients.append(client)
    print(f"{handle}: {how}", flush=True)
    return Member(handle, tokens["user_id"], client)


def _befriend(members: dict[str, Member]) -> None:
    """Each pair invites both ways: the second invitation accepts the first; 409 means it was done before."""
    names = list(members)
    made = 0
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            for x, y in ((a, b), (b, a)):
                r = members[x].client.post("/v1/contacts", json={"handle": y})
                _check(r, 201, 409)
                made += r.status_code == 201
    pairs = ", ".join(f"{a}-{b}" for i, a in enumerate(names) for b in names[i + 1:])
    print(f"contacts {pairs}: " + ("accepted" if made else "already contacts (reused)"), flush=True)


def _ingest(settings: Settings, db: Database, plan, members: dict[str, Member], state: dict,
            state_file: Path) -> list[Uploaded]:
    """Each round: the member's photos go into the bucket, then one tick of the upload sensor, whose run requests
    execute the ingest job here, as the daemon would run them (a run key that already succeeded is skipped)."""
    import dagster as dg

    from covr_pipelines.definitions import build_definitions
    from covr_pipelines.resources import build_resources

    store = build_resources(settings)["object_store"].store()
    defs = build_definitions(settings.model_copy(update={"database_url": db.url}))
    sensor = defs.get_repository_def().get_sensor_def(SENSOR)
    uploaded: list[Uploaded] = []
    warned: set[str] = set()
    for round_no, (handle, paths) in enumerate(plan.uploads, 1):
        member = members[handle]
        keys, new = [], 0
        for path in paths:
            data = path.read_bytes()
            upload_id = uuid.uuid5(_UPLOAD_NAMESPACE, f"{member.user_id}/{path.name}/{hashlib.sha256(data).hexdigest()}")
            key = f"uploads/{member.user_id}/{upload_id}.{cli._upload_ext(path, data[:64])}"
            if not _stored(store, key):
                store.put(key, data)
                new += 1
            keys.append(key)
            uploaded.append(Uploaded(handle, path, key))
        _step(f"round {round_no}: {handle} uploads {len(paths)} file(s)"
              + ("" if new == len(paths) else f", {len(paths) - new} already in the bucket (reused)"))
        quiet = logging.getLogger("dagster")
        level, quiet.level = quiet.level, logging.WARNING  # the tick's own line is printed below, in words
        with cli._dagster_instance(settings.dagster_home) as instance:
            with dg.build_sensor_context(instance=instance, cursor=state.get("sensor_cursor"),
                                         resources={"object_store": defs.resources["object_store"]}) as context:
                tick = sensor.evaluate_tick(context)
        quiet.level = level
        requests = list(tick.run_requests or [])
        ran = cli._execute_requests(settings, db, requests, sensor_name=SENSOR, warned=warned)
        state["sensor_cursor"] = tick.cursor
        state_file.write_text(json.dumps(state))
        print(f"{SENSOR}: {_tick_words(requests, ran, tick.skip_message)}", flush=True)
        cli._print_results(db, [(p.name, k) for p, k in zip(paths, keys, strict=True)], as_json=False)
    return uploaded


def _tick_words(requests, ran: int, skipped: str | None) -> str:
    objects = sum(int(r.tags.get("covr/objects", 0)) for r in requests)
    if not requests:
        return f"nothing new ({skipped})" if skipped else "nothing new"
    done = len(requests) - ran
    return (f"{objects} new upload(s) in {len(requests)} run request(s): {ran} ingest run(s) executed"
            + (f", {done} already done (same run key)" if done else ""))


def _stored(store, key: str) -> bool:
    try:
        store.head(key)
    except Exception:  # noqa: BLE001 - absent (each store raises its own not-found)
        return False
    return True


def _borrow(alice: Member, bob: Member) -> str:
    """Bob borrows one of alice's copies; a second run finds the completed hand-over and reuses it."""
    done = _check(bob.client.get("/v1/handovers", params={"status": "completed"}), 200)
    if done["count"]:
        handover = done["data"][0]
        print(f"bob already borrowed copy {handover['copy_id']} (hand-over {handover['handover_id']} completed; "
              f"reused)")
        return handover["copy_id"]
    copies = _check(bob.client.get("/v1/copies", params={"holder": alice.user_id, "status": "available",
                                                         "limit": 100}), 200)["data"]
    if not copies:
        raise cli.UsageError("alice holds no available copy to lend: did ingest recognise any of her photos?")
    copy = next((c for c in copies if c["book"]["title"] == BORROWED_TITLE), copies[0])
    title = copy["book"]["title"]
    request = _check(bob.client.post("/v1/requests", json={"copy_id": copy["copy_id"], "kind": "borrow"},
                                     headers={"Idempotency-Key": f"demo-request-{copy['copy_id']}"}), 201)
    print(f"bob asks alice to borrow {title!r}: request {request['request_id']} {request['status']}")
    accepted = _check(alice.client.post(f"/v1/requests/{request['request_id']}/accept",
                                        headers={"Idempotency-Key": f"demo-accept-{request['request_id']}"}), 200)
    print(f"alice accepts: request {accepted['status']}, hand-over {accepted['handover_id']} in progress")
    completed = _check(bob.client.post(f"/v1/handovers/{accepted['handover_id']}/complete",
                                       json={"condition_rating": 8, "note": "a little sun on the spine"},
                                       headers={"Idempotency-Key": f"demo-complete-{accepted['handover_id']}"}), 200)
    print(f"bob confirms he has it, condition 8/10: hand-over {completed['status']}")
    return copy["copy_id"]


def _notify(settings: Settings, db: Database) -> None:
    from covr_core.notifications.worker import WorkerConfig, run

    config = WorkerConfig.from_settings(settings)
    run(db.connection, config, once=True, report=lambda r: print(f"notifications: {r.line()}", flush=True))
    if not config.mailer_factory:
        print("mail is off (COVR_SMTP_HOST unset): notifications wait in each member's inbox")


def _ledger(settings: Settings, db: Database) -> tuple[str, str]:
    """A signing key in COVR_HOME when none is configured, a checkpoint when a chain moved since the last one, and
    a full verification."""
    from covr_core.ledger import checkpoint, verify

    if settings.ledger_signing_key is None and not checkpoint.default_key_file(settings).exists():
        cli.cmd_ledger_keygen(argparse.Namespace(out=None, force=False), settings)
    key = checkpoint.signing_key(settings)
    store = cli._ledger_store(settings)
    with db.connection() as conn:
        latest = checkpoint.latest(conn)
        heads = [(r["copy_id"], r["head_seq"], bytes(r["head_hash"])) for r in conn.execute(
            "select copy_id, head_seq, head_hash from ledger.chain where head_seq > 0 order by copy_id")]
        root = checkpoint.tree_of(heads)[-1][0] if heads else None
        if latest is not None and latest.tree_size == len(heads) and (not heads or latest.root_hash == root):
            cp, how = latest, "already covers every chain (reused)"
        else:
            cp, how = checkpoint.create(conn, key), "written and signed"
    where = checkpoint.export(store, cp)
    checkpoint_line = (f"checkpoint {cp.checkpoint_id} {how}: {cp.tree_size} chain(s), root "
                       f"{cp.root_hash.hex()[:16]}…, key {cp.key_id}, exported to {where}")
    print(checkpoint_line)
    with db.connection() as conn:
        report = verify.verify(conn, trusted_keys=checkpoint.trusted_keys(settings),
                               exported=checkpoint.exported_documents(store))
    verify_line = (f"ledger verified: {report.entries} entries in {report.copies} copies, checkpoint "
                   f"{report.checkpoint_id} signature good" if report.ok
                   else f"ledger verification FAILED: {report.first}")
    print(verify_line)
    return checkpoint_line, verify_line


def _summary(settings: Settings, db: Database, members: dict[str, Member], uploaded: list[Uploaded], copy_id: str,
             checkpoint_line: str, verify_line: str) -> None:
    print("\n" + "=" * 100 + "\nSUMMARY\n")
    _decisions_table(db, uploaded)
    _search(settings, db, members["bob"])
    _history(members["bob"], copy_id)
    print(f"\nledger: {verify_line}\n  {checkpoint_line}")
    with db.connection() as conn:
        counts = conn.execute(cli._SUMMARY_SQL).fetchone()
    print("\ncatalog: {books} books, {copies} copies; images: {accepted} accepted, {rejected} rejected; "
          "outbox: {events} events".format(**counts))
    print("\nwhere the data lives:")
    print(f"  database        {cli._where(db, settings)}")
    print(f"  photos/objects  {settings.objects_dir.absolute()}" if not settings.s3_bucket else
          f"  photos/objects  s3://{settings.s3_bucket}")
    print(f"  Dagster runs    {settings.dagster_home}")
    print(f"  ledger key      {_key_where(settings)}")
    print(f"  sample files    {(settings.home / 'demo').absolute()}")
    print("\nopen next:")
    rows = [
        ("covr dev", f"the Dagster UI on {DAGSTER_UI_URL} (the runs above, the asset graph) and the API on {API_URL}"),
        (f"{API_URL}/docs", f"the API's documentation; log in as {', '.join(members)} with password "
                            f"{DEMO_PASSWORD!r}"),
        (f"{DAGSTER_UI_URL}/runs", "the ingest runs of this demo"),
        ("covr ledger verify", "verify every chain again; covr notifications status"),
    ]
    width = max(len(what) for what, _ in rows) + 4
    for what, why in rows:
        print(f"  {what:<{width}}{why}")


def _key_where(settings: Settings) -> str:
    from covr_core.ledger import checkpoint

    if settings.ledger_signing_key is not None:
        return "COVR_LEDGER_SIGNING_KEY"
    return str(checkpoint.default_key_file(settings).absolute())


def _decisions_table(db: Database, uploaded: list[Uploaded]) -> None:
    keys = [u.key for u in uploaded]
    with db.connection() as conn:
        rows = {r["object_key"]: r for r in conn.execute(cli._RESULTS_SQL, (keys,)).fetchall()}
        failures = {r["object_key"]: r for r in conn.execute(
            "select object_key, reason from ingest.failure where object_key = any(%s) and resolved_at is null",
            (keys,)).fetchall()}
    lines = [(u, cli._result_line(u.file.name, rows.get(u.key), u.key, failures.get(u.key))) for u in uploaded]
    by_decision: dict[str, int] = {}
    for _, line in lines:
        label = line["decision"] if line["status"] == "accepted" else line["status"]
        by_decision[label] = by_decision.get(label, 0) + 1
    print(f"decisions for {len(lines)} uploaded file(s): "
          + ", ".join(f"{n} {d}" for d, n in sorted(by_decision.items(), key=lambda kv: -kv[1])))
    width = max(len(u.file.name) for u, _ in lines)
    print(f"\n  {'member':7} {'file':{width}}  {'decision':19} {'book':34} reason")
    for u, line in lines:
        decision = line["decision"] if line["status"] == "accepted" else line["status"]
        title = (line["title"] or "-")[:34]
        print(f"  {u.member:7} {u.file.name:{width}}  {decision or '-':19} {title:34} {cli.plain_reason(line)}")


def _search(settings: Settings, db: Database, bob: Member) -> None:
    """Rebuild the search read model (as the nightly job does), then search as bob over HTTP, with a typo."""
    from covr_core.search.backends import backend_from_settings

    report = backend_from_settings(settings, db.connection).reindex(db.connection)
    print(f"\nsearch: {report.documents} copy document(s) indexed into {report.target} in {report.seconds:.1f} s")
    titles = [c["book"]["title"] for c in _check(bob.client.get("/v1/copies", params={"limit": 100}), 200)["data"]]
    word = next((w for t in sorted(titles) for w in t.split() if len(w) >= 6 and w.isalpha()), None)
    if word is None:
        print("search: no visible title has a word long enough to misspell; skipped")
        return
    typo = word[:2] + word[3:]  # one letter dropped: one edit, within the tolerance for its length
    result = _check(bob.client.get("/v1/search", params={"q": typo, "limit": 3}), 200)
    print(f"  bob searches {typo!r} (for {word!r}): {result['total']} match(es) in {result['took_ms']:.1f} ms")
    for hit in result["hits"]:
        print(f"    {hit['title']} - {', '.join(hit['authors']) or 'unknown author'}  "
              f"[{hit['status']}, held by {hit['current_holder_name']}]")


def _history(bob: Member, copy_id: str) -> None:
    history = _check(bob.client.get(f"/v1/copies/{copy_id}/history"), 200)
    verified = _check(bob.client.get(f"/v1/copies/{copy_id}/history/verify"), 200)
    copy = _check(bob.client.get(f"/v1/copies/{copy_id}"), 200)
    print(f"\nhistory of copy {copy_id} ({copy['book']['title']!r}, owner {copy['owner']['handle']}, "
          f"now held by {copy['holder']['handle']}): {history['count']} entr{'y' if history['count'] == 1 else 'ies'}")
    for entry in history["data"]:
        who = " -> ".join(u["handle"] or u["user_id"][:8] for u in (entry["from_user"], entry["to_user"]) if u)
        print(f"  #{entry['seq']} {entry['at'][:19]} {entry['entry_type']:18} {who}  hash {entry['entry_hash'][:16]}…")
    state = "intact" if verified["ok"] else "BROKEN: " + "; ".join(p["message"] for p in verified["problems"])
    print(f"  verification: chain {state}, {verified['entries']} entr{'y' if verified['entries'] == 1 else 'ies'}"
          + (f", in signed checkpoint {verified['checkpoint_id']}" if verified["checkpoint_id"] else ""))
