"""Stripe's `Idempotency-Key` rules for POST requests.

- Same key, same endpoint and parameters, first request finished: its answer again (status and
  body, errors included), with `Idempotent-Replayed: true`.
- Same key, other endpoint or parameters: 400 `idempotency_error`.
- Same key while the first request is still running: 409, which the library retries.
- A request refused before the endpoint began executing stores nothing, so it may be retried.
Keys are scoped to the API key (Stripe scopes them to the account) and forgotten after 24 h.
With a state directory, a finished request's answer is stored in the same transaction as the
objects it made, so a restarted sandbox still replays it.
"""

from __future__ import annotations

import hashlib
import threading
import time
from dataclasses import dataclass
from typing import Any

from sandbox.persistence import Journal
from sandbox.stripe_sandbox.account import Change
from sandbox.stripe_sandbox.errors import StripeError

KEY_TTL_SECONDS = 24 * 60 * 60
Scope = tuple[str, str]


def key_scope(api_key: str, idempotency_key: str) -> Scope:
    # The API key is kept as a digest: stored state holds no secret.
    return hashlib.sha256(api_key.encode()).hexdigest()[:32], idempotency_key


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
    def __init__(self, ttl_seconds: float = KEY_TTL_SECONDS, journal: Journal | None = None) -> None:
        self._ttl = ttl_seconds
        self._journal = journal
        self._lock = threading.Lock()
        # In the order the keys were first used, so the oldest (the first to expire) come first.
        self._entries: dict[Scope, _Entry] = {}

    def load(self) -> None:
        if self._journal is None:
            return
        now = time.time()
        with self._lock:
            for row_key, state in self._journal.load("idempotency"):
                entry = _Entry(state["endpoint"], state["fingerprint"], state["created"])
                entry.response = SavedResponse(state["status"], state["body"])
                if now - entry.created <= self._ttl:
                    account_key, _, key = row_key.partition(" ")
                    self._entries[(account_key, key)] = entry

    def begin(self, scope: Scope, endpoint: str, fingerprint: str) -> SavedResponse | None:
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

    def finish(self, scope: Scope, response: SavedResponse, change: Change) -> None:
        """Keep the answer for replays; `change` stores it with the objects the request made."""
        with self._lock:
            entry = self._entries.get(scope)
            if entry is None:
                return
            entry.response = response
            if self._journal is not None:
                state = {
                    "endpoint": entry.endpoint,
                    "fingerprint": entry.fingerprint,
                    "created": entry.created,
                    "status": response.status,
                    "body": response.body,
                }
                change.touch_row("idempotency", f"{scope[0]} {scope[1]}", state)

    def release(self, scope: Scope) -> None:
        with self._lock:
            self._entries.pop(scope, None)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def _forget_expired(self, now: float) -> None:
        # Oldest first: stop at the first key still alive instead of scanning every key per request.
        while self._entries:
            scope, entry = next(iter(self._entries.items()))
            if now - entry.created <= self._ttl:
                return
            del self._entries[scope]
