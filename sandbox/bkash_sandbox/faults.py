"""bKash's bad days, driven by the controls: maintenance, lost Execute answers, slow Execute answers.

- Maintenance: every API call (not the hosted pages, which bKash serves apart from its API) answers
  HTTP 503 until the window ends.
- Execute timeouts: the next n Execute calls do their work at bKash (the payment is Completed, with a
  trxID Query shows) but their answer never comes back: the connection is held until the client
  gives up, or for `hold` seconds at most, and then dropped.
- Execute delay: the answer comes, late.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from dataclasses import dataclass, field

from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from sandbox.bkash_sandbox.errors import MESSAGES

MAINTENANCE_BODY = json.dumps({"statusCode": "503", "statusMessage": MESSAGES["503"]}).encode()


@dataclass
class Faults:
    maintenance_until: float = 0.0
    execute_timeouts: int = 0
    execute_timeout_hold: float = 0.0
    execute_delay: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def in_maintenance(self) -> bool:
        return self.maintenance_until > time.monotonic()

    def start_maintenance(self, seconds: float) -> None:
        self.maintenance_until = time.monotonic() + seconds if seconds > 0 else 0.0

    def arm_execute_timeouts(self, times: int, hold: float) -> None:
        with self._lock:
            self.execute_timeouts = times
            self.execute_timeout_hold = hold

    def take_execute_timeout(self) -> float | None:
        """How long to hold this Execute's connection, if its answer is to be lost."""
        with self._lock:
            if self.execute_timeouts <= 0:
                return None
            self.execute_timeouts -= 1
            return self.execute_timeout_hold

    def clear(self) -> None:
        self.maintenance_until = 0.0
        self.arm_execute_timeouts(0, 0.0)
        self.execute_delay = 0.0

    def to_json(self) -> dict[str, float | int]:
        return {
            "maintenance_seconds_left": round(max(self.maintenance_until - time.monotonic(), 0.0), 3),
            "execute_timeouts": self.execute_timeouts,
            "execute_timeout_hold": self.execute_timeout_hold,
            "execute_delay": self.execute_delay,
        }


class NoAnswer(Response):
    """A response that never answers: it waits for the client to give up, then is gone.

    Should the client wait longer than `hold`, the connection is dropped after a status line
    promising a body that never comes, which a client sees as the connection closing mid-answer;
    ASGI has no way to close a connection before any byte of the response.
    """

    def __init__(self, hold: float) -> None:
        super().__init__()
        self.hold = hold

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(_disconnect(receive), self.hold)
            return
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"1024")]})


async def _disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


class MaintenanceGate:
    """Answers every API call with bKash's 503 while maintenance lasts; pages and controls pass."""

    def __init__(self, app: ASGIApp, faults: Faults) -> None:
        self.app = app
        self.faults = faults

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self.faults.in_maintenance() and "/tokenized/" in scope["path"]:
            headers = [(b"content-type", b"application/json"), (b"content-length", str(len(MAINTENANCE_BODY)).encode())]
            await send({"type": "http.response.start", "status": 503, "headers": headers})
            await send({"type": "http.response.body", "body": MAINTENANCE_BODY})
            return
        await self.app(scope, receive, send)
