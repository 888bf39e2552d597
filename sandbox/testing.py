"""Serve an ASGI app over real HTTP on a free loopback port, for tests that need a real client.

The official `stripe` library and any independent bKash client only talk HTTP, so the sandbox
tests (and the payments service's, if they like) run the app with uvicorn in a background thread.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn
from starlette.types import ASGIApp


@contextmanager
def serve_in_thread(app: ASGIApp, *, startup_timeout: float = 10.0) -> Iterator[str]:
    """Yield the base URL (`http://127.0.0.1:<port>`) while `app` is served; stop it afterwards."""
    # Bind first so the port is known and no other process can take it between choice and use.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    # lifespan "off": the sandboxes must not depend on it (a mounted app's lifespan never runs).
    config = uvicorn.Config(app, log_level="warning", lifespan="off", access_log=False)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + startup_timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
