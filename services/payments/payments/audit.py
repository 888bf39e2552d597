"""The provider log: every call to a provider and every callback or webhook from one, secrets redacted.

Rows are written in a transaction of their own so the audit trail survives a failed use case."""

from __future__ import annotations

import contextvars
import json
import logging
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy.orm import Session

from payments.domain import redact, scrub
from payments.models import ProviderLog
from shopkit.db import Database
from shopkit.uow import unit_of_work

log = logging.getLogger("payments.audit")

# The payment a provider call is made for, so a low-level HTTP hook can file the exchange under it.
_current_payment: contextvars.ContextVar[uuid.UUID | None] = contextvars.ContextVar("current_payment", default=None)


# Set while a unit of work already holds the database (an event handler): log rows join it, since on
# SQLite a second writer would wait for that very transaction.
_joined_session: contextvars.ContextVar[Session | None] = contextvars.ContextVar("joined_session", default=None)


@contextmanager
def logged_in(session: Session) -> Iterator[None]:
    token = _joined_session.set(session)
    try:
        yield
    finally:
        _joined_session.reset(token)


@contextmanager
def for_payment(payment_id: uuid.UUID | None) -> Iterator[None]:
    token = _current_payment.set(payment_id)
    try:
        yield
    finally:
        _current_payment.reset(token)


class ProviderLogger:
    def __init__(self, db: Database, secrets: Callable[[], tuple[str, ...]]) -> None:
        self.db = db
        self.secrets = secrets

    def record(
        self,
        *,
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
        row = ProviderLog(
            direction=direction,
            provider=provider,
            operation=operation,
            url=scrub(url, secrets),
            request=_dump(request, secrets),
            response=_dump(response, secrets),
            status=status,
            payment_id=payment_id or _current_payment.get(),
        )
        joined = _joined_session.get()
        if joined is not None:
            joined.add(row)
            return
        try:
            with unit_of_work(self.db) as uow:
                uow.session.add(row)
                uow.commit()
        except Exception:
            # An audit write must never turn a provider's answer into a lost payment.
            log.exception("could not write the provider log", extra={"operation": operation})


def _dump(value: Any, secrets: tuple[str, ...]) -> str | None:
    if value is None:
        return None
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return scrub(value, secrets)
    return json.dumps(redact(value, secrets), default=str, sort_keys=True)
