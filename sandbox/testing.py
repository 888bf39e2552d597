"""Test helpers: serve a sandbox in a thread, or run one as a process of its own that a test may kill.

The official `stripe` library and any independent bKash client only talk HTTP, so the sandbox tests
run the app with uvicorn in a background thread (the kit's test server, lifespan off: the sandboxes
must not depend on it, a mounted app's lifespan never runs). Crash tests run a sandbox the way the
supervisor does (`python -m sandbox.stripe_sandbox`) and kill it with SIGKILL.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import httpx
from starlette.types import ASGIApp

from shopkit.testing import ServerThread, free_port, local_http

_REPO_ROOT = Path(__file__).resolve().parent.parent


@contextmanager
def serve_in_thread(app: ASGIApp) -> Iterator[str]:
    """Yield the base URL (`http://127.0.0.1:<port>`) while `app` is served; stop it afterwards."""
    with ServerThread(app, lifespan="off") as server:
        yield server.url


class SandboxProcess:
    """`python -m <module>` on a fixed loopback port, restartable on the same port after a kill."""

    def __init__(self, module: str, env: Mapping[str, str] | None = None, *, start_timeout: float = 60.0) -> None:
        self.module = module
        self.env = {**os.environ, **(env or {})}
        self.port = free_port()
        self.start_timeout = start_timeout
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> SandboxProcess:
        command = [sys.executable, "-m", self.module, "--port", str(self.port), "--log-level", "warning"]
        self.process = subprocess.Popen(command, env=self.env, cwd=_REPO_ROOT)
        deadline = time.monotonic() + self.start_timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.module} exited with {self.process.returncode}")
            try:
                local_http.get(f"{self.url}/", timeout=1)
                return self
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs, as when the machine's OOM killer or a crash takes it."""
        if self.process is not None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=30)
            self.process = None

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()
            self.process = None

    def __enter__(self) -> SandboxProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
