"""`covr dev` on the embedded default: the Dagster UI and the API answer, and SIGTERM leaves nothing running."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time

import httpx
import psutil

from covr_core.platform.db import embedded_server_pid


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _left_behind(home, ports) -> list[str]:
    found = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        cmdline = " ".join(proc.info["cmdline"] or [])
        if str(home) in cmdline or any(f"--port {p}" in cmdline for p in ports):
            found.append(f"{proc.info['pid']}: {cmdline[:120]}")
    return found


def test_covr_dev_serves_both_and_sigterm_stops_everything(tmp_path):
    home = tmp_path / "covr"
    ui_port, api_port = _free_port(), _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COVR_", "DATABASE_URL", "DAGSTER_HOME"))}
    proc = subprocess.Popen(
        [sys.executable, "-m", "covr_pipelines.cli", "dev", "--dagster-port", str(ui_port), "--api-port",
         str(api_port)],
        env={**env, "COVR_HOME": str(home)}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 240
        # Both answer, and covr dev has said so (it prints the URLs once its own probe sees them up).
        while not (_answers(f"http://127.0.0.1:{ui_port}/server_info")
                   and _answers(f"http://127.0.0.1:{api_port}/v1/health")
                   and any(line.startswith("database ") for line in lines)):
            assert proc.poll() is None, "".join(lines)
            assert time.monotonic() < deadline, "covr dev did not start both within 240 s"
            time.sleep(0.5)
        assert embedded_server_pid(home / "pg") is not None
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=120)
        reader.join(timeout=10)
    out = "".join(lines)
    assert proc.returncode == 128 + signal.SIGTERM, out
    assert f"Dagster UI  http://127.0.0.1:{ui_port}" in out and f"API         http://127.0.0.1:{api_port}" in out
    assert "superseded" not in out and "Traceback" not in out, out
    assert "covr: terminated" in out
    assert embedded_server_pid(home / "pg") is None
    deadline = time.monotonic() + 15
    while (left := _left_behind(home, (ui_port, api_port))) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not left, left
