"""Stripe's webhooks: verified on the raw bytes, stored once per event id and acknowledged at once;
applied after the commit by the events worker, oldest first, those waiting together in a transaction
(one that fails is retried later on its own)."""

from __future__ import annotations

import json
import logging
import math
import threading
import time
import uuid
from collections.abc import Mapping
from datetime import timedelta
from typing import Any, cast

from sqlalchemy import Table, bindparam, delete, func, or_, select, update
from sqlalchemy.orm import Session

from payments.context import Lane, PaymentsContext, wake_after_commit
from payments.flows import ledger
from payments.flows.locks import Locked
from payments.flows.outcomes import apply_verdict, lock_for_verdicts
from payments.models import WebhookEvent, as_utc, utcnow
from payments.providers.base import ProviderVerdict, WebhookRejected
from shopkit.db import Database, upsert_insert
from shopkit.problems import ServiceUnavailable
from shopkit.uow import UnitOfWork

log = logging.getLogger("payments.webhooks")

EVENTS = cast(Table, WebhookEvent.__table__)
BATCH = 100
MAX_ATTEMPTS = 10
MAX_BACKOFF = 300.0


def receive_stripe_webhook(context: PaymentsContext, raw: bytes, headers: Mapping[str, str], url: str) -> None:
    """Raises WebhookRejected (answered 400, logged as a digest only)."""
    stripe = context.providers.stripe
    try:
        event = stripe.verify_webhook(raw, headers.get("stripe-signature"))
    except WebhookRejected:
        context.audit.rejected(stripe.name, "webhook", url, headers, raw)
        raise
    with context.audit.collecting():
        body = raw.decode("utf-8", errors="replace")
        context.audit.inbound(stripe.name, "webhook", url, {"headers": dict(headers), "body": body}, status=200)
        with context.uow() as uow:
            store_event(uow, stripe.name, event)
            context.commit(uow)


def store_event(uow: UnitOfWork, provider: str, event: dict[str, Any]) -> None:
    """Keep a verified event; a redelivery of one kept before changes nothing."""
    now = utcnow()
    insert = upsert_insert(uow.session, EVENTS).values(
        id=uuid.uuid4(),
        provider=provider,
        provider_event_id=str(event["id"]),
        event_type=str(event.get("type", ""))[:100],
        payload=event,
        received_at=now,
    )
    uow.session.execute(insert.on_conflict_do_nothing(index_elements=[EVENTS.c.provider, EVENTS.c.provider_event_id]))
    wake_after_commit(uow, Lane.EVENTS)


# The oldest events not applied yet (and not waiting for a retry) that no other worker (a replica) is
# applying: skip them, never wait.
_EVENT = (EVENTS.c.id, EVENTS.c.provider, EVENTS.c.payload)
_PENDING = (
    select(*_EVENT)
    .where(EVENTS.c.processed_at.is_(None), or_(EVENTS.c.retry_at.is_(None), EVENTS.c.retry_at <= bindparam("now")))
    .order_by(EVENTS.c.received_at)
)
# Applied together in one transaction, up to this many; the one that fails sends them one by one.
AT_ONCE = 20
_NEXT_EVENTS = _PENDING.limit(AT_ONCE).with_for_update(skip_locked=True)
_THIS_EVENT = (
    select(*_EVENT)
    .where(EVENTS.c.id == bindparam("event_row_id"), EVENTS.c.processed_at.is_(None))
    .with_for_update(skip_locked=True)
)
_APPLIED = (
    update(EVENTS)
    .where(EVENTS.c.id == bindparam("event_row_id"))
    .values(processed_at=bindparam("now"), outcome=bindparam("outcome"))
)


_BACKLOG = select(func.min(EVENTS.c.received_at)).where(EVENTS.c.processed_at.is_(None), EVENTS.c.retry_at.is_(None))


class WebhookBacklog:
    """How long the oldest acknowledged webhook has waited to be applied. Past `limit` seconds new
    payments are refused (503 + Retry-After): each one brings another webhook, and taking them while
    payments is behind would only make every customer's confirmation later (and, past the payment
    timeout, turn paid orders into refunds). Read from the database at most every `every` seconds."""

    def __init__(self, db: Database, limit: float, every: float = 0.5) -> None:
        self.db = db
        self.limit = limit
        self.every = every
        self._lock = threading.Lock()
        self._age = 0.0
        self._read_at = -every

    def age(self) -> float:
        now = time.monotonic()
        with self._lock:
            if now - self._read_at >= self.every:
                self._read_at = now
                with self.db.sessions() as session:
                    oldest = session.scalar(_BACKLOG)
                self._age = (utcnow() - as_utc(oldest)).total_seconds() if oldest is not None else 0.0
            return self._age

    def admit(self) -> None:
        if self.limit <= 0:
            return
        age = self.age()
        if age > self.limit:
            raise ServiceUnavailable(
                "payments is catching up with the payments already made; try again in a moment",
                headers={"Retry-After": str(min(30, max(1, math.ceil(age - self.limit))))},
            )


def process_stored_events(context: PaymentsContext) -> int:
    applied = 0
    while applied < BATCH:
        claimed = _apply_pending(context)
        applied += claimed
        if claimed < AT_ONCE:  # nothing more was waiting: no read to find that out
            break
    return applied


def _apply_pending(context: PaymentsContext) -> int:
    """The events waiting, oldest first, in one transaction. If one of them cannot be applied, the
    transaction is undone and each is applied in a transaction of its own, so that only that one waits
    for its retry."""
    with context.uow() as uow:
        rows = uow.session.execute(_NEXT_EVENTS, {"now": utcnow()}).all()
        if not rows:
            return 0
        try:
            verdicts = [_verdict(context, row) for row in rows]
            locked = lock_for_verdicts(uow, [verdict for verdict in verdicts if verdict is not None])
            now = utcnow()
            marks = [
                {"event_row_id": row.id, "now": now, "outcome": _apply(uow, verdict, locked)}
                for row, verdict in zip(rows, verdicts, strict=True)
            ]
            uow.session.connection().execute(_APPLIED, marks)
            context.commit(uow)
            return len(rows)
        except Exception:
            uow.rollback()
    for row in rows:
        _apply_alone(context, row.id)
    return len(rows)


def _apply_alone(context: PaymentsContext, event_row_id: uuid.UUID) -> None:
    with context.uow() as uow:
        row = uow.session.execute(_THIS_EVENT, {"event_row_id": event_row_id}).first()
        if row is None:  # applied meanwhile (another replica), or being applied
            return
        try:
            outcome = _apply(uow, _verdict(context, row))
            uow.session.execute(_APPLIED, {"event_row_id": row.id, "now": utcnow(), "outcome": outcome})
            context.commit(uow)
        except Exception as exc:
            uow.rollback()
            _retry_later(context, row.id, exc)


def _verdict(context: PaymentsContext, row: Any) -> ProviderVerdict | None:
    stripe = context.providers.stripe
    payload = row.payload if isinstance(row.payload, dict) else json.loads(row.payload)
    return stripe.verdict_of_event(payload) if row.provider == stripe.name else None


def _apply(uow: UnitOfWork, verdict: ProviderVerdict | None, locked: Locked | None = None) -> str:
    outcome = apply_verdict(uow, verdict, locked) if verdict else "ignored: not an event the shop acts on"
    if outcome == ledger.NO_PAYMENT_FOR_TRANSACTION:
        # A refund delivered before the success it refunds (reversed or late deliveries): the success
        # may come, so this waits and is tried again, as a failure would be.
        raise LookupError(f"no payment has this transaction yet ({verdict and verdict.transaction_id})")
    return outcome


def _retry_later(context: PaymentsContext, event_row_id: uuid.UUID, exc: Exception) -> None:
    """One event that cannot be applied must not hold back the ones after it: it waits, with back-off,
    and after MAX_ATTEMPTS it is set aside (processed, with the error as its outcome) for an operator."""
    log.exception("a stored webhook event could not be applied", extra={"event_row_id": str(event_row_id)})
    with context.uow() as uow:
        attempts = 1 + (uow.session.scalar(select(EVENTS.c.attempts).where(EVENTS.c.id == event_row_id)) or 0)
        values: dict[str, Any] = {"attempts": attempts, "outcome": f"error: {exc!r}"[:2000]}
        if attempts >= MAX_ATTEMPTS:
            values["processed_at"] = utcnow()
        else:
            values["retry_at"] = utcnow() + timedelta(seconds=min(2.0**attempts, MAX_BACKOFF))
        uow.session.execute(update(EVENTS).where(EVENTS.c.id == event_row_id).values(**values))
        uow.commit()


def prune_processed(session: Session, older_than: timedelta) -> int:
    """Processed events past the retention (Stripe stops redelivering after three days)."""
    result = session.execute(
        delete(EVENTS).where(EVENTS.c.processed_at.is_not(None), EVENTS.c.processed_at < utcnow() - older_than)
    )
    return int(getattr(result, "rowcount", 0) or 0)
