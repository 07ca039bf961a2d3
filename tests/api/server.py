"""A real API server for tests: uvicorn in a thread on a free loopback port, over a given configuration."""

from __future__ import annotations

import socket
import threading
import time

import uvicorn

from covr_api.main import create_app
from covr_core.platform.settings import Settings

PASSWORD = "correct horse battery staple"


def serve(settings: Settings, **overrides):
    """Start the app on a free loopback port; returns (base_url, stop)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(settings), log_level="warning", lifespan="on", **overrides))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the API server did not start")
        time.sleep(0.02)

    def stop():
        server.should_exit = True
        thread.join(timeout=15)
        sock.close()

    return f"http://127.0.0.1:{port}", stop
