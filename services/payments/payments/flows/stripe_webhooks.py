"""Stripe's webhooks: verified on the raw bytes, stored once per event id and acknowledged at once;
applied after the commit by the events worker, oldest first, each in a transaction of its own."""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from datetime import timedelta
from typing import Any, cast

from sqlalchemy import Table, delete, select
from sqlalchemy.orm import Session

from payments.context import Lane, PaymentsContext, wake_after_commit
from payments.flows.outcomes import apply_verdict
from payments.models import WebhookEvent, utcnow
from payments.providers.base import WebhookRejected
from shopkit.db import upsert_insert
from shopkit.uow import UnitOfWork

EVENTS = cast(Table, WebhookEvent.__table__)
BATCH = 100


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


def process_stored_events(context: PaymentsContext) -> int:
    with context.uow() as uow:
        pending = list(
            uow.session.scalars(
                select(WebhookEvent.id)
                .where(WebhookEvent.processed_at.is_(None))
                .order_by(WebhookEvent.received_at)
                .limit(BATCH)
            )
        )
    for event_row_id in pending:
        process_event(context, event_row_id)
    return len(pending)


def process_event(context: PaymentsContext, event_row_id: uuid.UUID) -> None:
    stripe = context.providers.stripe
    with context.uow() as uow:
        # Another worker (a replica) holding it is applying it: skip rather than wait.
        row = uow.session.scalar(
            select(WebhookEvent)
            .where(WebhookEvent.id == event_row_id, WebhookEvent.processed_at.is_(None))
            .with_for_update(skip_locked=True)
        )
        if row is None:
            return
        payload = row.payload if isinstance(row.payload, dict) else json.loads(row.payload)
        verdict = stripe.verdict_of_event(payload) if row.provider == stripe.name else None
        row.outcome = apply_verdict(uow, verdict) if verdict else "ignored: not an event the shop acts on"
        row.processed_at = utcnow()
        context.commit(uow)


def prune_processed(session: Session, older_than: timedelta) -> int:
    """Processed events past the retention (Stripe stops redelivering after three days)."""
    result = session.execute(
        delete(EVENTS).where(EVENTS.c.processed_at.is_not(None), EVENTS.c.processed_at < utcnow() - older_than)
    )
    return int(getattr(result, "rowcount", 0) or 0)
