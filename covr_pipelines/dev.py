"""`covr dev`: the Dagster UI (webserver and daemon) and the API together on one database, stopped as one.

This process holds the database (the embedded server on the default), serves the API in a thread, and runs
`dagster dev` as a child in its own process group pointed at the same database through DATABASE_URL. Ctrl-C or
SIGTERM stops Dagster (webserver, daemon, code server and any run it launched), then the API, then releases the
database; the embedded server stops when its last holder leaves.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

from covr_core.platform.settings import Settings

WORKSPACE = Path(__file__).resolve().parent.parent / "workspace.yaml"
STOP_GRACE_S = 30


class StartFailed(RuntimeError):
    pass


def serve(settings: Settings, *, host: str = "127.0.0.1", port: int = 0):
    """The API app on host:port (0: a free port), in a thread of this process; returns (base_url, stop)."""
    import uvicorn

    from covr_api.main import create_app

    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise StartFailed(f"cannot serve the API on {host}:{port}: {exc.strerror}") from None
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(settings), log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            sock.close()
            raise StartFailed("the API server did not start")
        time.sleep(0.02)

    def stop():
        server.should_exit = True
        thread.join(timeout=15)
        sock.close()

    return f"http://{host}:{port}", stop


def dagster_command(host: str, port: int) -> list[str]:
    """`dg dev` where the installed Dagster has it (dagster-dg-cli), else `dagster dev`: neither prints a
    deprecation warning for this project's layout (a workspace.yaml naming the Definitions module)."""
    bindir = Path(sys.executable).parent
    dg = bindir / "dg" if (bindir / "dg").exists() else shutil.which("dg")
    if dg:
        return [str(dg), "dev", "--workspace", str(WORKSPACE), "--host", host, "--port", str(port)]
    dagster = bindir / "dagster" if (bindir / "dagster").exists() else shutil.which("dagster") or "dagster"
    return [str(dagster), "dev", "-w", str(WORKSPACE), "--host", host, "--port", str(port)]


def run_dev(settings: Settings, *, host: str, dagster_port: int, api_port: int, open_db) -> int:
    command = dagster_command(host, dagster_port)
    db = open_db(settings)
    dagster: subprocess.Popen | None = None
    stop_api = None
    try:
        env = {**os.environ, "DATABASE_URL": db.url, "DAGSTER_HOME": str(settings.dagster_home),
               "COVR_HOME": str(settings.home.absolute())}
        if Path(command[0]).name != "dg":
            # `dagster dev` says it is superseded by `dg dev`, which needs the dagster-dg-cli package; where that
            # is not installed the two do the same, so the newcomer is not greeted by the warning.
            env["PYTHONWARNINGS"] = ",".join(filter(None, [
                os.environ.get("PYTHONWARNINGS"), "ignore:Function `dev_command` is superseded"]))
        settings.dagster_home.mkdir(parents=True, exist_ok=True)
        # Its own session: a terminal's Ctrl-C reaches this process only, which then stops the group in order.
        dagster = subprocess.Popen(command, env=env, start_new_session=True,
                                   cwd=WORKSPACE.parent)
        api_url, stop_api = serve(settings.model_copy(update={"database_url": db.url}), host=host, port=api_port)
        ui_url = f"http://{host}:{dagster_port}"
        _wait_for(ui_url + "/server_info", dagster)
        where = f"embedded PostgreSQL in {settings.pg_data_dir.absolute()}" if db.embedded else "PostgreSQL"
        print(f"Dagster UI  {ui_url}   (webserver and daemon; sensors and schedules on)", flush=True)
        print(f"API         {api_url}   (docs: {api_url}/docs)", flush=True)
        print(f"database    {where}; Ctrl-C stops everything", flush=True)
        while dagster.poll() is None:
            time.sleep(0.5)
        print(f"covr: dagster dev exited with status {dagster.returncode}; stopping", file=sys.stderr)
        return 1
    finally:
        if dagster is not None:
            _stop_group(dagster)
        if stop_api is not None:
            stop_api()
        db.close()


def _wait_for(url: str, proc: subprocess.Popen, timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise StartFailed(f"dagster dev exited with status {proc.returncode} before its UI answered")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise StartFailed(f"the Dagster UI did not answer on {url} within {timeout:.0f} s")


def _stop_group(proc: subprocess.Popen) -> None:
    """SIGTERM to dagster dev's whole group (it stops its webserver, daemon and code server), SIGKILL after the
    grace period for whatever still hangs."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout=STOP_GRACE_S)
    except subprocess.TimeoutExpired:
        pass
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.2)
    else:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    if proc.poll() is None:
        proc.wait(timeout=10)
