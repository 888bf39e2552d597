"""Serve an ASGI app over real HTTP on a free loopback port, for tests that need a real client.

The official `stripe` library and any independent bKash client only talk HTTP, so the sandbox tests
run the app with uvicorn in a background thread (the kit's test server, lifespan off: the sandboxes
must not depend on it, a mounted app's lifespan never runs).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from starlette.types import ASGIApp

from shopkit.testing import ServerThread


@contextmanager
def serve_in_thread(app: ASGIApp) -> Iterator[str]:
    """Yield the base URL (`http://127.0.0.1:<port>`) while `app` is served; stop it afterwards."""
    with ServerThread(app, lifespan="off") as server:
        yield server.url
