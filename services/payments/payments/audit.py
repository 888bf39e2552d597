"""The provider log: every call to a provider and every callback or webhook from one, secrets redacted.

Inside a flow (`collecting()`), entries wait for the flow's next commit and are written with it, so
logging costs no transaction of its own and an exchange commits with the outcome it led to; whatever
is left when the flow ends (it failed before committing) is written on its own. A rejected webhook is
kept as a digest (size, SHA-256, headers), never its body: an anonymous caller cannot grow the log by
more than a few hundred bytes per request."""

from __future__ import annotations

import contextvars
import hashlib
import json
import logging
import re
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Table, delete, insert
from sqlalchemy.orm import Session

from payments.domain import redact, scrub
from payments.models import ProviderLog as ProviderLogRow
from payments.models import utcnow
from shopkit.db import Database

log = logging.getLogger("payments.audit")

TABLE = cast(Table, ProviderLogRow.__table__)
_INSERT = insert(TABLE)  # built once, like the kit's outbox insert
# A JSON text that may hold a secret by name (a field such as "id_token": "..."); others are only
# scrubbed of known secret values, which costs far less than parsing, redacting and dumping again.
_SECRET_FIELD = re.compile(
    r'"(authorization|id_token|refresh_token|app_secret|app_key|x-app-key|password|username|'
    r'stripe-signature|api_key|secret|client_secret)"\s*:\s*"',
    re.IGNORECASE,
)

# The payment a provider exchange is about, so a low-level HTTP hook can file it under that payment.
_current_payment: contextvars.ContextVar[uuid.UUID | None] = contextvars.ContextVar("current_payment", default=None)
# The entries of the running flow that are not written yet.
_pending: contextvars.ContextVar[list[dict[str, Any]] | None] = contextvars.ContextVar("pending_log", default=None)


@contextmanager
def for_payment(payment_id: uuid.UUID | None) -> Iterator[None]:
    token = _current_payment.set(payment_id)
    try:
        yield
    finally:
        _current_payment.reset(token)


class ProviderLog:
    def __init__(self, db: Database, secrets: Callable[[], tuple[str, ...]]) -> None:
        self.db = db
        self.secrets = secrets

    # Recording

    def outbound(
        self,
        provider: str,
        operation: str,
        url: str,
        headers: Mapping[str, str],
        body: Any,
        response: Any,
        status: int | None,
    ) -> None:
        self._record("outbound", provider, operation, url, {"headers": dict(headers), "body": body}, response, status)

    def inbound(
        self,
        provider: str,
        operation: str,
        url: str,
        request: Any,
        *,
        status: int | None = None,
        payment_id: uuid.UUID | None = None,
    ) -> None:
        self._record("inbound", provider, operation, url, request, None, status, payment_id)

    def repair(self, provider: str, kind: str, source: str, record: Any, payment_id: uuid.UUID | None) -> None:
        """What reconciliation changed because the provider said so, with what it said."""
        self._record("repair", provider, f"reconcile {kind}", f"reconcile:{source}", record, None, None, payment_id)

    def rejected(self, provider: str, operation: str, url: str, headers: Mapping[str, str], raw: bytes) -> None:
        digest = {"headers": dict(headers), "size": len(raw), "sha256": hashlib.sha256(raw).hexdigest()}
        self._record("inbound", provider, operation, url, {"rejected": digest}, None, 400)

    def _record(
        self,
        direction: str,
        provider: str,
        operation: str,
        url: str,
        request: Any,
        response: Any,
        status: int | None,
        payment_id: uuid.UUID | None = None,
    ) -> None:
        secrets = self.secrets()
        entry = {
            "id": uuid.uuid4(),
            "direction": direction,
            "provider": provider,
            "operation": operation,
            "url": scrub(url, secrets),
            "request": _dump(request, secrets),
            "response": _dump(response, secrets),
            "status": status,
            "payment_id": payment_id or _current_payment.get(),
            "created_at": utcnow(),
        }
        pending = _pending.get()
        if pending is not None:
            pending.append(entry)
        else:
            self._write([entry])

    # Writing

    @contextmanager
    def collecting(self) -> Iterator[None]:
        """Entries recorded inside wait for `take_pending` (the flow's next commit)."""
        token = _pending.set([])
        try:
            yield
        finally:
            left = _pending.get() or []
            _pending.reset(token)
            if left:
                self._write(left)

    def add_pending(self, session: Session) -> list[dict[str, Any]]:
        """Put the waiting entries into this transaction; returns them, to be put back if it fails."""
        pending = _pending.get()
        if not pending:
            return []
        entries = list(pending)
        pending.clear()
        session.execute(_INSERT, entries)
        return entries

    def put_back(self, entries: list[dict[str, Any]]) -> None:
        pending = _pending.get()
        if pending is not None:
            pending[:0] = entries

    def _write(self, entries: list[dict[str, Any]]) -> None:
        try:
            with self.db.engine.begin() as connection:
                connection.execute(_INSERT, entries)
        except Exception:
            # An audit write must never turn a provider's answer into a lost payment.
            log.exception("could not write the provider log", extra={"entries": len(entries)})


def prune(session: Session, older_than: timedelta, now: datetime | None = None) -> int:
    cutoff = (now or utcnow()) - older_than
    result = session.execute(delete(TABLE).where(TABLE.c.created_at < cutoff))
    return int(getattr(result, "rowcount", 0) or 0)


def _dump(value: Any, secrets: tuple[str, ...]) -> str | None:
    if value is None:
        return None
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    if isinstance(value, str):
        if not _SECRET_FIELD.search(value):
            return scrub(value, secrets)
        try:
            value = json.loads(value)
        except ValueError:
            return scrub(value, secrets)
    return json.dumps(redact(value, secrets), default=str)
