"""The `covr` command line: database, catalog import and ingest, all on the same code paths as Dagster."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
import uuid
from collections.abc import Iterable
from contextlib import contextmanager
from pathlib import Path

from covr_core.platform.db import Database, DatabaseUnavailable, describe_target, stop_embedded
from covr_core.media.imaging import sniff_format
from covr_core.contact import accounts
from covr_core.contact.accounts import InvalidHandle, ensure_user, normalise_handle
from covr_core.shared.errors import DomainError
from covr_core.platform.migrations import MigrationError, migrate, status
from covr_core.platform.settings import Settings

JSON_KEYS = (
    "file", "image_id", "status", "reason", "sha256", "phash", "isbn13", "title", "book_id", "copy_id",
    "decision", "match_reason", "confidence", "source",
)
EXT_BY_FORMAT = {"jpeg": "jpg", "png": "png", "webp": "webp", "heif": "heic"}
UPLOAD_EXTS = {"jpg", "jpeg", "png", "webp", "heic", "heif"}


# The tags the daemon puts on a sensor's runs (documented in Dagster's run tags), so a later daemon tick skips
# the run keys this process has already run.
SENSOR_NAME_TAG = "dagster/sensor_name"
RUN_KEY_TAG = "dagster/run_key"


class UsageError(Exception):
    pass


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C so that `finally` blocks release the database and Dagster marks the run."""


def _raise_terminated(signum, frame) -> None:
    # A second SIGTERM must not cut the release short; SIGKILL is there for a process that hangs.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise Terminated()


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="covr: %(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("OMP_THREAD_LIMIT", "1")
    # The default SIGTERM action ends the process without running `finally` or atexit, which would
    # leave this process's handle on the embedded server registered and the server running.
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _raise_terminated) if in_main_thread else None
    try:
        settings = Settings()
        return args.handler(args, settings)
    except (DatabaseUnavailable, MigrationError, UsageError, InvalidHandle) as exc:
        print(f"covr: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        terminated = isinstance(exc, Terminated)
        print(f"covr: {'terminated' if terminated else 'interrupted'}", file=sys.stderr)
        return 128 + (signal.SIGTERM if terminated else signal.SIGINT)
    finally:
        if in_main_thread:
            signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="covr", description="Covr: photos of books become a shared catalog.")
    sub = parser.add_subparsers(required=True, metavar="COMMAND")

    db = sub.add_parser("db", help="the system of record").add_subparsers(required=True, metavar="ACTION")
    db.add_parser("migrate", help="apply pending migrations and rebuild read models").set_defaults(handler=cmd_migrate)
    db.add_parser("status", help="show the database and each migration's state").set_defaults(handler=cmd_status)
    db.add_parser("stop", help="stop the embedded PostgreSQL server, whichever processes hold it").set_defaults(
        handler=cmd_db_stop)

    catalog = sub.add_parser("catalog", help="the local book catalog").add_subparsers(required=True, metavar="ACTION")
    imp = catalog.add_parser("import", help="import books from JSONL, CSV or a Goodreads library export")
    imp.add_argument("file", type=Path)
    imp.add_argument("--encoding", help="the file's text encoding (default: UTF-8, else detected)")
    imp.set_defaults(handler=cmd_catalog_import)

    ingest = sub.add_parser("ingest", help="upload photos as a user and run the ingest job in-process")
    ingest.add_argument("--as", dest="user", metavar="USER", help="the uploader's handle")
    ingest.add_argument("paths", nargs="*", type=Path, metavar="FILE_OR_DIR")
    ingest.add_argument("--retry", action="append", default=[], metavar="IMAGE_ID",
                        help="retry a failed image now (its image id or object key); repeatable")
    ingest.add_argument("--retry-failed", action="store_true", help="retry every failed image now")
    ingest.add_argument("--json", action="store_true", help="one JSON object per line")
    ingest.set_defaults(handler=cmd_ingest)

    run = sub.add_parser("run", help="the main job: migrate, then ingest every upload not yet ingested")
    run.set_defaults(handler=cmd_run)

    demo = sub.add_parser("demo", help="the whole of Covr on sample data: ingest, a borrow over HTTP, the ledger; a summary")
    demo.set_defaults(handler=cmd_demo)

    dev = sub.add_parser("dev", help="the Dagster UI (webserver, daemon) and the API together, until Ctrl-C")
    dev.add_argument("--host", default="127.0.0.1")
    dev.add_argument("--dagster-port", type=int, default=3000)
    dev.add_argument("--api-port", type=int, default=8000)
    dev.set_defaults(handler=cmd_dev)

    api = sub.add_parser("api", help="serve the HTTP API (uvicorn)")
    api.add_argument("--host", default="127.0.0.1")
    api.add_argument("--port", type=int, default=8000)
    api.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    api.add_argument("--no-access-log", action="store_true",
                     help="no line per request (about 1 ms of a worker's time each; keep it when nothing else logs)")
    api.set_defaults(handler=cmd_api)

    models = sub.add_parser("models", help="model weights").add_subparsers(required=True, metavar="ACTION")
    fetch = models.add_parser("fetch", help="download model weights into COVR_HOME/models and make them the default")
    fetch.add_argument("which", choices=["clip"])
    fetch.add_argument("--pretrained", help="open_clip pretrained tag (default: laion2b_s34b_b79k for ViT-B-32)")
    fetch.add_argument("--file", type=Path, help="use this already-downloaded weights file instead of downloading")
    fetch.set_defaults(handler=cmd_models_fetch)

    users = sub.add_parser("users", help="member accounts").add_subparsers(required=True, metavar="ACTION")
    claim = users.add_parser("claim-code", help="a one-time code with which a member ingest created sets a password")
    claim.add_argument("handle")
    claim.set_defaults(handler=cmd_claim_code)

    _notifications_parser(sub)
    _search_parser(sub)
    ledger = sub.add_parser("ledger", help="the provenance ledger").add_subparsers(required=True, metavar="ACTION")
    keygen = ledger.add_parser("keygen", help="write a new Ed25519 checkpoint signing key")
    keygen.add_argument("--out", type=Path, help="where to write the PEM (default: the configured key file)")
    keygen.add_argument("--force", action="store_true", help="replace an existing key (a rotation)")
    keygen.set_defaults(handler=cmd_ledger_keygen)
    verify = ledger.add_parser("verify", help="check every chain, its head and the latest signed checkpoint")
    verify.add_argument("--copy", metavar="ID", help="only this copy's chain")
    verify.add_argument("--json", action="store_true", help="one JSON object with every problem")
    verify.set_defaults(handler=cmd_ledger_verify)
    proof = ledger.add_parser("check-proof", help="check an inclusion proof file (GET /v1/copies/ID/history/proof)")
    proof.add_argument("file", type=Path)
    proof.add_argument("--public-key", action="append", default=[], metavar="HEX",
                       help="a trusted public key (default: the configured ones); repeatable")
    proof.set_defaults(handler=cmd_ledger_check_proof)
    ledger.add_parser("checkpoint", help="write, sign and export a checkpoint now").set_defaults(
        handler=cmd_ledger_checkpoint)
    return parser


def _open(settings: Settings, *, migrate_first: bool = True) -> Database:
    db = Database.from_settings(settings)
    if migrate_first:
        try:
            with db.connection() as conn:
                migrate(conn)
        except BaseException:
            # The caller's `finally: db.close()` has not started yet: without this, a refused migration (or
            # Ctrl-C during one) keeps this process's handle, and the embedded server, until the process exits.
            db.close()
            raise
    return db


def cmd_models_fetch(args, settings: Settings) -> int:
    """`covr models fetch clip`: open_clip weights into COVR_HOME/models, the default CLIP weights from then on."""
    from covr_core.identification.models import ClipFetchFailed, fetch_clip, record_clip

    try:
        if args.file is not None:
            path = record_clip(settings.home, settings.clip_model, args.file)
        else:
            try:
                import open_clip  # noqa: F401
            except ImportError:
                print("covr: the CLIP extra is not installed: pip install -e '.[clip]' (or: make run CLIP=1)",
                      file=sys.stderr)
                return 2
            path = fetch_clip(settings.home, settings.clip_model, args.pretrained)
    except ClipFetchFailed as exc:
        print(f"covr: {exc}", file=sys.stderr)
        return 1
    print(f"CLIP {settings.clip_model} weights: {path} (the default from now on; COVR_CLIP_WEIGHTS overrides it)")
    return 0


def cmd_api(args, settings: Settings) -> int:
    import uvicorn

    if args.workers < 1:
        raise UsageError("--workers must be at least 1")
    # An import string and a factory: every worker process builds its own app (and pool) from the environment.
    uvicorn.run("covr_api.main:create_app", factory=True, host=args.host, port=args.port, workers=args.workers,
                log_level="info", access_log=not args.no_access_log)
    return 0


def cmd_dev(args, settings: Settings) -> int:
    """`covr dev`: Dagster UI and API on one database; Ctrl-C or SIGTERM stops both and releases the database."""
    from covr_pipelines.dev import StartFailed, run_dev

    try:
        return run_dev(settings, host=args.host, dagster_port=args.dagster_port, api_port=args.api_port,
                       open_db=_open)
    except StartFailed as exc:
        raise UsageError(str(exc)) from None


def cmd_claim_code(args, settings: Settings) -> int:
    db = _open(settings)
    try:
        with db.connection() as conn:
            code = accounts.issue_claim_code(conn, args.handle)
    except DomainError as exc:
        print(f"covr: {exc.detail}", file=sys.stderr)
        return 2
    finally:
        db.close()
    handle = accounts.normalise_handle(args.handle)
    print(f"claim code for {handle}: {code}  (one use, valid {accounts.CLAIM_CODE_TTL.days} days; "
          f"POST /v1/auth/claim with handle, code and a new password)")
    return 0


def _where(db: Database, settings: Settings) -> str:
    if db.embedded:
        return f"embedded PostgreSQL in {settings.pg_data_dir.absolute()}"
    return f"PostgreSQL at {describe_target(db.url)}"


def cmd_migrate(args, settings: Settings) -> int:
    db = _open(settings, migrate_first=False)
    try:
        with db.connection() as conn:
            applied = migrate(conn)
        print(f"{_where(db, settings)}: applied {len(applied)} migration(s)")
        for name in applied:
            print(f"  applied {name}")
    finally:
        db.close()
    return 0


def cmd_status(args, settings: Settings) -> int:
    db = _open(settings, migrate_first=False)
    try:
        with db.connection() as conn:
            states = status(conn)
            version = conn.execute("show server_version").fetchone()["server_version"]
        print(f"{_where(db, settings)} (server {version})")
        for s in states:
            when = s.applied_at.isoformat(timespec="seconds") if s.applied_at else ""
            print(f"  {s.state:8} {s.name} {when}".rstrip())
        pending = sum(s.state != "applied" for s in states)
        print("up to date" if not pending else f"{pending} migration(s) not applied: run `covr db migrate`")
    finally:
        db.close()
    return 0


def cmd_db_stop(args, settings: Settings) -> int:
    """Stop the embedded server for COVR_HOME; the tool for a server left running by a killed process."""
    if settings.database_url:
        print(f"DATABASE_URL is set ({describe_target(settings.database_url)}): "
              f"there is no embedded server to stop")
        return 0
    data_dir = settings.pg_data_dir.absolute()

    def tell(outcome) -> None:
        held = (f"; still held by process(es) {', '.join(map(str, outcome.holders))}, whose connections will drop"
                if outcome.holders else "")
        print(f"stopping embedded PostgreSQL in {data_dir} (pid {outcome.server_pid}){held}", flush=True)

    if stop_embedded(data_dir, before_stop=tell) is None:
        print(f"embedded PostgreSQL in {data_dir} is not running")
    else:
        print("stopped")
    return 0


def cmd_catalog_import(args, settings: Settings) -> int:
    """Every non-blank row is counted once: inserted, updated, unchanged, skipped or refused (refusals on stderr)."""
    import psycopg

    from covr_core.catalog.books import CatalogFile, import_books

    if not args.file.is_file():
        raise UsageError(f"catalog file {args.file} does not exist")
    try:
        # cmd_demo builds its Namespace by hand, without --encoding.
        catalog = CatalogFile.open(args.file, encoding=getattr(args, "encoding", None))
        rows = list(catalog.rows())  # read the whole file first: one that cannot be read imports nothing
    except OSError as exc:
        raise UsageError(f"cannot read catalog file {args.file}: {exc.strerror or exc}") from None
    except ValueError as exc:  # CatalogFileError names the file; anything else (a UnicodeError) may not
        message = str(exc)
        raise UsageError(message if str(args.file) in message else f"{args.file}: {message}") from None
    db = _open(settings)
    try:
        with db.connection() as conn:
            report = import_books(conn, rows)
    except psycopg.Error as exc:
        first_line = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise UsageError(f"{args.file}: the database stopped the import, nothing was imported: {first_line}") from None
    finally:
        db.close()
    encoding = catalog.encoding + (f", {catalog.encoding_note}" if catalog.encoding_note else "")
    print(f"{args.file}: {report.rows} rows: {report.inserted} inserted, {report.updated} updated, "
          f"{report.unchanged} unchanged, {report.skipped} skipped, {report.refused} refused (encoding {encoding})")
    for error in sorted(report.errors, key=lambda e: e.line):
        print(f"  {error}", file=sys.stderr)
    return 0


def _expand(paths: Iterable[Path]) -> list[Path]:
    files = []
    for path in paths:
        if path.is_dir():
            files.extend(sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith(".")))
        else:
            files.append(path)
    return files


def _upload_ext(path: Path, head: bytes) -> str:
    suffix = path.suffix.lower().lstrip(".")
    if suffix in UPLOAD_EXTS:
        return suffix
    return EXT_BY_FORMAT.get(sniff_format(head) or "", "jpg")


def _execute(settings: Settings, db: Database, object_keys: list[str]) -> None:
    """Run the same Dagster job the sensor triggers, in this process, one run per batch."""
    from covr_pipelines.defs.ingestion.sensors import ingest_run_request

    size = settings.ingest_batch_size
    _execute_requests(settings, db, [ingest_run_request(object_keys[start : start + size])
                                     for start in range(0, len(object_keys), size)])


# A run's warnings that the result lines already say in plain words: not repeated as notes.
_SAID_BY_RESULT_LINES = (" rejected: ", " failed (attempt ", ": skipped, not uploads/")


def _execute_requests(settings: Settings, db: Database, requests, *, sensor_name: str | None = None,
                      warned: set[str] | None = None) -> int:
    """Run the ingest job in this process for each RunRequest, as the daemon would for a sensor's requests.

    With sensor_name, a request whose run key already has a successful run of that sensor is skipped, exactly as
    the daemon skips it; returns how many runs were executed. The console shows only errors during a run; each
    distinct warning of the runs is printed once afterwards, on stderr (`--json` keeps stdout to its lines), and
    not again for a later run given the same `warned` set.
    """
    import dagster as dg

    from covr_pipelines.definitions import INGEST_JOB, build_definitions

    defs = build_definitions(settings.model_copy(update={"database_url": db.url}))
    job = defs.resolve_job_def(INGEST_JOB)
    executed = 0
    with _dagster_instance(settings.dagster_home) as instance:
        for request in requests:
            tags = dict(request.tags)
            if sensor_name and request.run_key:
                tags |= {SENSOR_NAME_TAG: sensor_name, RUN_KEY_TAG: request.run_key}
                done = instance.get_runs(dg.RunsFilter(tags={SENSOR_NAME_TAG: sensor_name, RUN_KEY_TAG: request.run_key},
                                                       statuses=[dg.DagsterRunStatus.SUCCESS]), limit=1)
                if done:
                    continue
            run_config = {**request.run_config, "loggers": {"console": {"config": {"log_level": "ERROR"}}}}
            with _signals_kept_from_dagster():
                result = job.execute_in_process(run_config=run_config, instance=instance, tags=tags)
            executed += 1
            _print_warnings(instance, result.run_id, warned if warned is not None else set())
            if not result.success:
                raise UsageError(f"ingest run {result.run_id} failed; see the Dagster logs above "
                                 f"or run {result.run_id} in the Dagster UI (`covr dev`)")
    return executed


def _print_warnings(instance, run_id: str, warned: set[str]) -> None:
    for record in instance.all_logs(run_id):
        message = record.user_message
        if (record.dagster_event is None and record.level >= logging.WARNING and message not in warned
                and not any(s in message for s in _SAID_BY_RESULT_LINES)):
            warned.add(message)
            print(f"note: {message}", file=sys.stderr, flush=True)


@contextmanager
def _signals_kept_from_dagster():
    """Around one in-process Dagster run: SIGINT and SIGTERM end the command as they do any other.

    During a run Dagster handles both signals alike, raising DagsterExecutionInterruptedError (after it has marked
    the run), and afterwards it leaves SIGTERM on the SIGINT handler. That would end `covr ingest` with a traceback,
    or with 130 for a SIGTERM. Python writes each caught signal's number to the wakeup fd whichever handler runs,
    so the signal that interrupted the run is known: it becomes Terminated or KeyboardInterrupt, which `main` turns
    into a one-line message and 143 or 130, and this command's own handlers are put back.
    """
    from dagster import DagsterExecutionInterruptedError

    if threading.current_thread() is not threading.main_thread():
        yield  # Dagster leaves signals alone off the main thread, and so does this
        return
    handlers = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    read_fd, write_fd = os.pipe()
    os.set_blocking(read_fd, False)
    os.set_blocking(write_fd, False)
    previous_fd = signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)

    def received() -> bytes:
        try:
            return os.read(read_fd, 1024)
        except BlockingIOError:
            return b""

    try:
        yield
        signals = received()  # a signal Dagster captured between steps, when the run then ended anyway
    except (DagsterExecutionInterruptedError, KeyboardInterrupt) as exc:
        if isinstance(exc, Terminated):
            raise
        signals = received()
        if signal.SIGTERM not in signals:
            raise KeyboardInterrupt() from None
    finally:
        signal.set_wakeup_fd(previous_fd)
        os.close(read_fd)
        os.close(write_fd)
        for signum, handler in handlers.items():
            if handler is not None:
                signal.signal(signum, handler)
    if signal.SIGTERM in signals:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # as _raise_terminated: a second one must not cut the release
        raise Terminated()
    if signal.SIGINT in signals:
        raise KeyboardInterrupt()


def _dagster_instance(home: Path):
    """The persistent instance `make dagster` shows, so CLI runs appear in its UI next to the sensor's."""
    import fcntl

    import dagster as dg

    home.mkdir(parents=True, exist_ok=True)
    # A fresh home's SQLite storages are created and stamped on first open; two CLI processes doing
    # that at once can both try to create the tables. Later opens only read the schema version, and
    # run writes are safe to share (SQLite's WAL and Dagster's busy timeout).
    with open(home / ".covr-instance.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            return dg.DagsterInstance.from_config(str(home))
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def cmd_ingest(args, settings: Settings) -> int:
    if args.retry or args.retry_failed:
        if args.paths or args.user:
            raise UsageError("--retry and --retry-failed take no files and no --as: they re-run failed images")
        return _retry(args, settings)
    if not args.user or not args.paths:
        raise UsageError("covr ingest needs --as USER and at least one FILE_OR_DIR (or --retry / --retry-failed)")
    handle = normalise_handle(args.user)
    files = _expand(args.paths)
    db = _open(settings)
    try:
        from covr_pipelines.resources import build_resources

        store = build_resources(settings)["object_store"].store()
        with db.connection() as conn:
            user_id = ensure_user(conn, handle)
        keys: list[str | None] = []
        for path in files:
            if not path.is_file():
                keys.append(None)
                continue
            data = path.read_bytes()
            key = f"uploads/{user_id}/{uuid.uuid4()}.{_upload_ext(path, data[:64])}"
            store.put(key, data)
            keys.append(key)
        if any(keys):
            _execute(settings, db, [k for k in keys if k])
        _print_results(db, list(zip(map(str, files), keys)), as_json=args.json)
    finally:
        db.close()
    return 0


def _retry(args, settings: Settings) -> int:
    """Run the ingest job now over failed images, named or all; each gets its result line like a new upload."""
    from covr_core.dedup.failures import failures_for, open_failures

    db = _open(settings)
    try:
        with db.connection() as conn:
            if args.retry_failed:
                failures, unknown = open_failures(conn), []
            else:
                failures, unknown = failures_for(conn, args.retry)
        if unknown:
            raise UsageError(f"no failed image named {', '.join(unknown)}; `covr ingest --retry-failed` retries all")
        keys = [f["object_key"] for f in failures]
        if keys:
            _execute(settings, db, keys)
        elif not args.json:
            print("no failed images to retry")
        _print_results(db, [(k, k) for k in keys], as_json=args.json)
    finally:
        db.close()
    return 0


def _print_results(db: Database, items: list[tuple[str, str | None]], *, as_json: bool) -> None:
    """One line per (file, object key), in input order: what ingest recorded, or why nothing was."""
    keys = [k for _, k in items if k]
    with db.connection() as conn:
        rows = {r["object_key"]: r for r in conn.execute(_RESULTS_SQL, (keys,)).fetchall()}
        failures = {r["object_key"]: r for r in conn.execute(
            "select object_key, reason from ingest.failure where object_key = any(%s) and resolved_at is null",
            (keys,)).fetchall()}
    for file, key in items:
        line = _result_line(file, rows.get(key) if key else None, key, failures.get(key))
        print(json.dumps(line) if as_json else _human(line), flush=True)


def cmd_run(args, settings: Settings) -> int:
    """Migrate, then ingest every upload object that has no media.image row yet."""
    db = _open(settings)
    try:
        from covr_pipelines.resources import build_resources

        store = build_resources(settings)["object_store"].store()
        with db.connection() as conn:
            known = {r["object_key"] for r in conn.execute("select object_key from media.image").fetchall()}
        pending = [o.key for o in sorted(store.list_since("uploads/", None), key=lambda o: (o.last_modified, o.key))
                   if o.key not in known]
        print(f"{_where(db, settings)}: schema up to date")
        print(f"objects in {store.describe()}: {len(pending)} new upload(s)")
        if pending:
            _execute(settings, db, pending)
        with db.connection() as conn:
            summary = conn.execute(_SUMMARY_SQL).fetchone()
        print("catalog: {books} books, {copies} copies; images: {accepted} accepted, {rejected} rejected; "
              "outbox: {events} events".format(**summary))
    finally:
        db.close()
    return 0


def cmd_demo(args, settings: Settings) -> int:
    """The whole of Covr on generated data: ingest through the sensor and the job, a borrow over HTTP, notifications,
    the ledger, and a summary; a second run reuses what the first made (covr_pipelines/demo.py)."""
    from covr_pipelines.demo import run_demo

    return run_demo(settings)


_RESULTS_SQL = """
select d.object_key, d.image_id, d.status, d.rejection_reason, d.failure_reason, d.sha256, d.phash, d.isbn13,
       coalesce(b.title, i.title) as title, d.book_id, d.decision, d.match_reason, d.confidence,
       d.identification_source, r.copy_id, r.matched_copy_id
from read_model.ingest_decision d
left join ingest.identification i on i.image_id = d.image_id
left join ingest.dedup_result r on r.image_id = d.image_id
left join catalog.book b on b.book_id = d.book_id
where d.object_key = any(%s)
"""

_SUMMARY_SQL = """
select (select count(*) from catalog.book) as books,
       (select count(*) from catalog.copy) as copies,
       (select count(*) from media.image where status = 'accepted') as accepted,
       (select count(*) from media.image where status = 'rejected') as rejected,
       (select count(*) from outbox.event) as events
"""


def _result_line(file: str, row: dict | None, key: str | None, failure: dict | None = None) -> dict:
    line = dict.fromkeys(JSON_KEYS)
    line["file"] = file
    if row is None:
        line["status"] = "failed" if failure else "rejected"
        line["reason"] = f"file {file} does not exist or is not a regular file" if key is None else (
            failure["reason"] if failure else f"upload {key} was not ingested; see the run's logs")
        return line
    line.update(
        image_id=str(row["image_id"]),
        status=row["status"],
        reason=row["rejection_reason"] or row["failure_reason"],
        sha256=row["sha256"],
        phash=row["phash"],
        isbn13=row["isbn13"],
        title=row["title"],
        book_id=str(row["book_id"]) if row["book_id"] else None,
        copy_id=str(row["copy_id"] or row["matched_copy_id"]) if (row["copy_id"] or row["matched_copy_id"]) else None,
        decision=row["decision"],
        match_reason=row["match_reason"],
        confidence=round(float(row["confidence"]), 4) if row["confidence"] is not None else None,
        source=row["identification_source"],
    )
    return line


# What each decision means to the member who uploaded the photo. The identification source says how the book was
# named; the match reason how the photo matched earlier ones.
_SOURCE_WORDS = {"isbn": "by its ISBN", "ocr": "by the title on the cover", "embedding": "by the cover's look"}


def plain_reason(line: dict) -> str:
    """One line's decision in plain words, for a person: "same photo as one already uploaded"."""
    status, decision, match = line["status"], line["decision"], line["match_reason"]
    if status == "rejected":
        return f"not a photo Covr can use: {line['reason']}"
    if status == "failed":
        return f"could not be processed yet, will be retried: {line['reason']}"
    via = _SOURCE_WORDS.get(line["source"] or "", "")
    if decision == "ignore":
        return ("same photo as one already uploaded" if match == "exact_hash"
                else "not recognised: kept for review")
    if decision == "existing_copy":
        return ("the same shot of your copy again" if match == "phash_match"
                else f"another photo of your copy, recognised {via}".rstrip(", "))
    if decision == "exchange_suspected":
        return "another member's copy: ask them about it"
    if decision == "new_copy":
        return f"a new copy of a book in the catalog, recognised {via}".rstrip(", ")
    if decision == "new_book":
        return f"a book the catalog did not have, recognised {via}: added with your copy".replace(" , ", " ")
    return "accepted, not decided yet"


def _human(line: dict) -> str:
    if line["status"] in ("rejected", "failed"):
        retry = f" (now: covr ingest --retry {line['image_id']})" if (
            line["status"] == "failed" and line["image_id"]) else ""
        return f"{line['file']}: {line['status']}: {plain_reason(line)}{retry}"
    what = f"{line['title']!r}" if line["title"] else "no book identified"
    isbn = f" (ISBN {line['isbn13']})" if line["isbn13"] else ""
    return f"{line['file']}: {line['decision'] or 'accepted'}: {what}{isbn}: {plain_reason(line)}"


def _notifications_parser(sub) -> None:
    notifications = sub.add_parser("notifications", help="the inbox and mail worker").add_subparsers(
        required=True, metavar="ACTION")
    worker = notifications.add_parser(
        "worker", help="turn outbox events into notifications and send their mail, until stopped")
    worker.add_argument("--once", action="store_true", help="one round: handle every readable event, send what is "
                                                            "due, then exit")
    worker.add_argument("--interval", type=float, default=2.0, metavar="S", help="seconds between rounds (default 2)")
    worker.set_defaults(handler=cmd_notifications_worker)
    notifications.add_parser(
        "status", help="the consumer's position and pending, retrying and failed mail; exits 1 if anything failed"
    ).set_defaults(handler=cmd_notifications_status)
    retry = notifications.add_parser("retry", help="put mail that failed for good back in the queue")
    retry.add_argument("ids", nargs="*", type=int, metavar="NOTIFICATION_ID", help="default: every failed mail")
    retry.set_defaults(handler=cmd_notifications_retry)


def cmd_notifications_worker(args, settings: Settings) -> int:
    """The worker runs until SIGTERM or Ctrl-C; each round that does something prints one line."""
    from covr_core.notifications.worker import WorkerConfig, run

    if args.interval <= 0:
        raise UsageError("--interval must be a positive number of seconds")
    config = WorkerConfig.from_settings(settings)
    db = _open(settings)
    try:
        mail = (f"mail via {settings.smtp_host}:{settings.smtp_port}" if config.mailer_factory
                else "mail off (COVR_SMTP_HOST unset): inbox only")
        if not args.once:
            print(f"notifications worker on {_where(db, settings)}; {mail}", flush=True)
        last = run(db.connection, config, once=args.once, interval_s=args.interval,
                   report=lambda r: print(f"notifications: {r.line()}", flush=True))
    finally:
        db.close()
    return 1 if last.consume_error else 0


def cmd_notifications_status(args, settings: Settings) -> int:
    from covr_core.notifications import deliveries, inbox
    from covr_core.shared.consumer import consumer_state

    db = _open(settings)
    try:
        with db.connection() as conn:
            state = consumer_state(conn, inbox.CONSUMER)
            mail = deliveries.summary(conn)
            troubled = deliveries.troubled(conn)
    finally:
        db.close()
    if state is None:
        print(f"consumer {inbox.CONSUMER}: not started yet (run `covr notifications worker`)")
    else:
        print(f"consumer {state.name}: {state.handled} event(s) handled, {state.pending} waiting, "
              f"cursor at event {state.last_event_id}, moved {state.updated_at.isoformat(timespec='seconds')}")
        if state.last_error:
            print(f"  stuck since {state.failed_at.isoformat(timespec='seconds')}: {state.last_error}")
    smtp = f"SMTP {settings.smtp_host}:{settings.smtp_port}" if settings.smtp_host else "SMTP not configured"
    print(f"mail ({smtp}): {mail.pending} pending ({mail.due} due now, {mail.retrying} retrying), "
          f"{mail.sent} sent, {mail.failed} failed")
    for row in troubled:
        when = (f", next try {row['next_attempt_at'].isoformat(timespec='seconds')}"
                if row["status"] == "pending" else "")
        print(f"  {row['status']:8} notification {row['notification_id']} ({row['kind']}) to {row['to_address']}, "
              f"{row['attempts']} attempt(s){when}: {row['last_error']}")
    if mail.failed:
        print("failed mail is not retried by itself: fix the cause, then `covr notifications retry`")
    return 1 if mail.failed or (state is not None and state.last_error) else 0


def cmd_notifications_retry(args, settings: Settings) -> int:
    from covr_core.notifications import deliveries

    db = _open(settings)
    try:
        with db.connection() as conn:
            requeued = deliveries.retry_failed(conn, args.ids or None)
    finally:
        db.close()
    missing = sorted(set(args.ids) - set(requeued))
    print(f"{len(requeued)} failed mail(s) back in the queue" + (f": {', '.join(map(str, requeued))}" if requeued
                                                                  else ""))
    if missing:
        print(f"covr: no failed mail for notification(s) {', '.join(map(str, missing))}", file=sys.stderr)
        return 2
    return 0



# covr ledger ---------------------------------------------------------------------------------------------------

def cmd_ledger_keygen(args, settings: Settings) -> int:
    from covr_core.ledger import checkpoint

    path = args.out or checkpoint.default_key_file(settings)
    if path.exists() and not args.force:
        raise UsageError(f"{path} exists; a new key is a rotation: keep the old public key in "
                         "COVR_LEDGER_TRUSTED_KEYS and pass --force (see README, Provenance ledger)")
    pem = checkpoint.generate_private_key_pem()
    old = checkpoint.load_private_key(path.read_bytes()) if path.exists() else None
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.touch(mode=0o600)
    tmp.write_bytes(pem)
    tmp.replace(path)
    key = checkpoint.load_private_key(pem)
    print(f"wrote {path} (key id {checkpoint.key_id(key)})")
    print(f"public key: {checkpoint.public_hex(key)}")
    if old is not None:
        print(f"replaced key {checkpoint.key_id(old)}; keep verifying its checkpoints with "
              f"COVR_LEDGER_TRUSTED_KEYS='[\"{checkpoint.public_hex(old)}\"]'")
    return 0


def _ledger_store(settings: Settings):
    from covr_pipelines.resources import build_resources

    return build_resources(settings)["object_store"].store()


def cmd_ledger_verify(args, settings: Settings) -> int:
    from covr_core.ledger import checkpoint, verify

    keys = checkpoint.trusted_keys(settings)
    exported = checkpoint.exported_documents(_ledger_store(settings))
    db = _open(settings)
    try:
        with db.connection() as conn:
            report = verify.verify(conn, copy_id=args.copy, trusted_keys=keys, exported=exported)
    finally:
        db.close()
    if args.json:
        print(json.dumps(report.as_dict()))
    elif report.ok:
        rate = report.entries / report.seconds if report.seconds else 0
        cp = f"checkpoint {report.checkpoint_id}" if report.checkpoint_id else "no checkpoint yet"
        print(f"ledger verified: {report.entries} entries in {report.copies} copies, {cp} "
              f"({report.seconds:.2f} s, {rate:,.0f} entries/s)")
    else:
        print(f"covr: ledger verification failed: {report.first}", file=sys.stderr)
        for problem in report.problems[1:]:
            print(f"  {problem}", file=sys.stderr)
    return 0 if report.ok else 1


def cmd_ledger_check_proof(args, settings: Settings) -> int:
    from covr_core.ledger import checkpoint, proofs

    try:
        proof = json.loads(args.file.read_text())
    except (OSError, ValueError) as exc:
        raise UsageError(f"{args.file}: not a readable JSON proof ({exc})") from None
    try:
        keys = [checkpoint.parse_public_key(k) for k in args.public_key] or list(
            checkpoint.trusted_keys(settings).values())
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    problems = proofs.check_proof(proof, keys) if isinstance(proof, dict) else ["not a covr inclusion proof"]
    if problems:
        print(f"covr: {args.file}: {problems[0]}", file=sys.stderr)
        return 1
    body = json.loads(proof["checkpoint"]["body"])
    print(f"{args.file}: copy {proof['copy_id']} entry {proof['head_seq']} is in checkpoint "
          f"{body['checkpoint_id']} ({body['tree_size']} copies), signed by key {body['key_id']}; "
          f"{len(proof.get('entries', []))} entries chain to it")
    return 0


def cmd_ledger_checkpoint(args, settings: Settings) -> int:
    from covr_core.ledger import checkpoint

    try:
        key = checkpoint.signing_key(settings)
    except (checkpoint.SigningKeyMissing, ValueError) as exc:
        raise UsageError(str(exc)) from None
    db = _open(settings)
    try:
        with db.connection() as conn:
            cp = checkpoint.create(conn, key)
    except (checkpoint.ChainRegressed, checkpoint.CheckpointConflict) as exc:
        print(f"covr: {exc}", file=sys.stderr)
        return 1
    finally:
        db.close()
    where = checkpoint.export(_ledger_store(settings), cp)
    print(f"checkpoint {cp.checkpoint_id}: {cp.tree_size} copies, root {cp.root_hash.hex()}, key {cp.key_id}, "
          f"exported to {where}")
    return 0


# --- search -------------------------------------------------------------------------------------------------------


def _search_parser(sub) -> None:
    search = sub.add_parser(
        "search", help="search copies (`covr search sync` runs the index's sync worker)",
        description="Search the copies index: words with typo tolerance and a prefix on the last word, a "
                    "Meilisearch filter expression, sort fields. `covr search sync [--once]` keeps the index in "
                    "step with the outbox instead (to search for the word sync, write `covr search 'sync '`).")
    search.add_argument("query", nargs="*", help="words; \"quoted words\" are an exact phrase")
    search.add_argument("--filter", metavar="EXPR", help="e.g. 'status = available AND published_year >= 2000'")
    search.add_argument("--sort", metavar="FIELD", help="title, published_year, condition_grade or created_at, "
                                                        "with :asc or :desc; several separated by commas")
    search.add_argument("--as", dest="as_user", metavar="USER", help="search as this member (handle): only the "
                                                                     "copies they may see; default: every copy")
    search.add_argument("--facets", metavar="FIELDS", help="count matches by these filterable fields")
    search.add_argument("--limit", type=int, default=20)
    search.add_argument("--offset", type=int, default=0)
    search.add_argument("--json", action="store_true", help="print the result as one JSON object")
    search.add_argument("--once", action="store_true", help="(sync) handle every readable event, then exit")
    search.add_argument("--interval", type=float, default=2.0, metavar="S", help="(sync) seconds between rounds")
    search.set_defaults(handler=cmd_search)
    sub.add_parser("reindex", help="rebuild the search index and the cover vectors from Postgres and swap them in"
                   ).set_defaults(handler=cmd_reindex)


def _search_backend(db: Database, settings: Settings):
    from covr_core.search.backends import backend_from_settings

    return backend_from_settings(settings, db.connection)


def cmd_search(args, settings: Settings) -> int:
    if args.query == ["sync"]:
        return _search_sync(args, settings)
    from covr_core.search.service import search_copies

    db = _open(settings)
    try:
        backend = _search_backend(db, settings)
        with db.connection() as conn:
            viewer = None
            if args.as_user:
                row = conn.execute("select user_id from contact.user where handle = %s",
                                   (normalise_handle(args.as_user),)).fetchone()
                if row is None:
                    raise UsageError(f"no member with handle {args.as_user!r}")
                viewer = str(row["user_id"])
            result = search_copies(conn, backend, viewer_id=viewer, q=" ".join(args.query), filter=args.filter,
                                   sort=args.sort, limit=args.limit, offset=args.offset, facets=args.facets)
    except DomainError as exc:
        print(f"covr: {exc.detail}", file=sys.stderr)
        return 2
    finally:
        db.close()
    if args.json:
        print(json.dumps(result.as_dict(), ensure_ascii=False))
        return 0
    for hit in result.hits:
        year = f" ({hit['published_year']})" if hit["published_year"] else ""
        authors = f" - {', '.join(hit['authors'])}" if hit["authors"] else ""
        print(f"{hit['title']}{authors}{year}  [{hit['status']}, held by {hit['current_holder_name']}]  "
              f"copy {hit['copy_id']}")
    for name, counts in result.facets.items():
        print(f"{name}: " + ", ".join(f"{value} {n}" for value, n in counts.items()))
    print(f"{len(result.hits)} shown of {result.total}{'+' if result.total >= 1000 else ''} match(es), "
          f"{result.took_ms:.1f} ms ({result.backend})")
    return 0


def _search_sync(args, settings: Settings) -> int:
    """The sync worker runs until SIGTERM or Ctrl-C; each round that does something prints one line."""
    from covr_core.search import sync
    from covr_core.search.vectors import payload_updater

    if args.interval <= 0:
        raise UsageError("--interval must be a positive number of seconds")
    db = _open(settings)
    try:
        backend = _search_backend(db, settings)
        if not args.once:
            print(f"search sync on {_where(db, settings)} into {backend.describe()}", flush=True)
        last = sync.run(db.connection, backend, vector_payloads=payload_updater(settings), once=args.once,
                        interval_s=args.interval, report=lambda r: print(f"search sync: {r.line()}", flush=True))
    finally:
        db.close()
    return 1 if last.error else 0


def cmd_reindex(args, settings: Settings) -> int:
    from covr_core.search.vectors import rebuild_vectors

    db = _open(settings)
    try:
        backend = _search_backend(db, settings)
        report = backend.reindex(db.connection)
        print(f"search: {report.documents} document(s) into {report.target} in {report.seconds:.1f} s "
              f"({report.documents / max(report.seconds, 1e-9):.0f}/s)")
        vectors = rebuild_vectors(settings, db.connection)
        print(f"vectors: {vectors.points} point(s) into {vectors.target} in {vectors.seconds:.1f} s")
    finally:
        db.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
