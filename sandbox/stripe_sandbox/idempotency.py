"""Stripe's `Idempotency-Key` rules for POST requests.

- Same key, same endpoint and parameters, first request finished: its answer again (status and
  body, errors included), with `Idempotent-Replayed: true`.
- Same key, other endpoint or parameters: 400 `idempotency_error`.
- Same key while the first request is still running: 409, which the library retries.
- A request refused before the endpoint began executing stores nothing, so it may be retried.
Keys are scoped to the API key (Stripe scopes them to the account) and forgotten after 24 h.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

from sandbox.stripe_sandbox.errors import StripeError

KEY_TTL_SECONDS = 24 * 60 * 60


@dataclass(frozen=True)
class SavedResponse:
    status: int
    body: dict[str, Any]


@dataclass
class _Entry:
    endpoint: str
    fingerprint: str
    created: float
    response: SavedResponse | None = None


class IdempotencyKeys:
    def __init__(self, ttl_seconds: float = KEY_TTL_SECONDS) -> None:
        self._ttl = ttl_seconds
        self._lock = threading.Lock()
        self._entries: dict[tuple[str, str], _Entry] = {}

    def begin(self, scope: tuple[str, str], endpoint: str, fingerprint: str) -> SavedResponse | None:
        """Claim the key for a new request, or return the answer to replay; raise on a conflict."""
        key = scope[1]
        now = time.time()
        with self._lock:
            self._forget_expired(now)
            entry = self._entries.get(scope)
            if entry is None:
                self._entries[scope] = _Entry(endpoint=endpoint, fingerprint=fingerprint, created=now)
                return None
            if entry.endpoint != endpoint:
                raise StripeError(
                    400,
                    f"Keys for idempotent requests can only be used for the same endpoint they were first "
                    f"used for ('{entry.endpoint}' vs '{endpoint}'). Try using a key other than '{key}' if "
                    "you meant to execute a different request.",
                    type="idempotency_error",
                )
            if entry.fingerprint != fingerprint:
                raise StripeError(
                    400,
                    "Keys for idempotent requests can only be used with the same parameters they were first "
                    f"used with. Try using a key other than '{key}' if you meant to execute a different "
                    "request.",
                    type="idempotency_error",
                )
            if entry.response is None:
                raise StripeError(
                    409,
                    "There is currently another in-progress request using this Idempotent Key (that probably "
                    "means you submitted twice, and the other request is still going through): "
                    f"{key}. Please try again later.",
                    code="idempotency_key_in_use",
                )
            return entry.response

    def finish(self, scope: tuple[str, str], response: SavedResponse) -> None:
        with self._lock:
            entry = self._entries.get(scope)
            if entry is not None:
                entry.response = response

    def release(self, scope: tuple[str, str]) -> None:
        with self._lock:
            self._entries.pop(scope, None)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def _forget_expired(self, now: float) -> None:
        expired = [scope for scope, entry in self._entries.items() if now - entry.created > self._ttl]
        for scope in expired:
            del self._entries[scope]
