"""Reconciliation with the providers, every SHOP_RECONCILE_INTERVAL seconds (a webhook or callback can
be lost; a refund can be made in the provider's dashboard):

1. each payment still `initiated` or `refund_pending` past SHOP_RECONCILE_GRACE is looked up at its
   provider, and what it says is applied through `apply_verdict`, as a webhook would be (a success
   runs the saga; one for a cancelled order is refunded; a refund made outside is recorded);
2. Stripe's `charge.refunded` events since the last one read (GET /v1/events, paged; the position
   kept in `reconcile_cursors`) are applied once each, whether or not their webhook came.

Several replicas may run it at once: due payments are claimed (FOR UPDATE SKIP LOCKED, then a
`reconciled_at` stamp committed before the provider is asked), the event list is read under a lease,
and each event id is stored with its effect in one transaction, so no verdict is applied twice; a
pass that dies between a lookup and its effect leaves the payment to the next pass, whose lookup
finds the same answer and applies it once."""

from __future__ import annotations

import logging
import uuid
from datetime import timedelta
from typing import Any, cast

from sqlalchemy import Table, bindparam, or_, select, update

from payments.audit import for_payment
from payments.context import PaymentsContext
from payments.domain import ZERO, PaymentStatus, money
from payments.flows import repairs
from payments.flows.stripe_webhooks import EVENTS, store_event
from payments.models import Payment, ReconcileCursor, utcnow
from payments.providers.base import Outcome, ProviderUnavailable, ProviderVerdict
from shopkit.db import upsert_insert

log = logging.getLogger("payments.reconcile")

RECONCILED_STATUSES = (PaymentStatus.INITIATED, PaymentStatus.REFUND_PENDING)
BATCH = 100
# At most this many batches per pass; what is left waits for the next pass (the oldest first).
MAX_BATCHES = 10
STRIPE_CURSOR = "stripe-events"
# Only refunds are read back from the event list: a payment the customer made is found by its own
# lookup once past the grace, which leaves time for its webhook (and for the order to time out first).
REFUND_EVENTS = ("charge.refunded",)
CURSOR_LEASE = timedelta(seconds=120)
CURSORS = cast(Table, ReconcileCursor.__table__)


def run_pass(context: PaymentsContext) -> int:
    """One reconciliation pass; returns how many repairs it made."""
    repaired = reconcile_payments(context)
    try:
        repaired += reconcile_stripe_events(context)
    except ProviderUnavailable as exc:
        log.warning("Stripe's events could not be read; next pass", extra={"error": str(exc)})
    if repaired:
        log.info("reconciliation repaired payments", extra={"repairs": repaired})
    return repaired


# 1. Payments past the grace


_DUE = (
    select(Payment.id, Payment.provider, Payment.provider_reference)
    .where(
        Payment.status.in_(RECONCILED_STATUSES),
        Payment.provider_reference.is_not(None),
        Payment.updated_at < bindparam("settled_before"),
        or_(Payment.reconciled_at.is_(None), Payment.reconciled_at < bindparam("looked_before")),
    )
    .order_by(Payment.updated_at)
    .limit(BATCH)
    .with_for_update(skip_locked=True)
)


def claim_due(context: PaymentsContext) -> list[tuple[uuid.UUID, str, str]]:
    """The payments this pass looks up; a replica's concurrent pass skips them (locked now, stamped
    once this commits) until the next interval."""
    settings = context.settings
    now = utcnow()
    with context.uow() as uow:
        due = [
            (row.id, row.provider, row.provider_reference)
            for row in uow.session.execute(
                _DUE,
                {
                    "settled_before": now - timedelta(seconds=settings.reconcile_grace),
                    "looked_before": now - timedelta(seconds=settings.reconcile_interval * 0.9),
                },
            )
        ]
        if due:
            uow.session.execute(
                update(Payment)
                .where(Payment.id.in_([payment_id for payment_id, _, _ in due]))
                # The stamp is not a change of the payment: its updated_at (the grace's clock) stays.
                .values(reconciled_at=now, updated_at=Payment.updated_at)
            )
        uow.commit()
    return due


def reconcile_payments(context: PaymentsContext) -> int:
    repaired = 0
    # Batch after batch: each claim stamps its payments, so the next one takes the following ones.
    for _ in range(MAX_BATCHES):
        due = claim_due(context)
        for payment_id, provider_name, reference in due:
            try:
                repaired += reconcile_payment(context, payment_id, provider_name, reference)
            except Exception:
                # One payment the provider cannot tell about must not hold back the others.
                log.exception("a payment could not be reconciled", extra={"payment_id": str(payment_id)})
        if len(due) < BATCH:
            break
    return repaired


def reconcile_payment(context: PaymentsContext, payment_id: uuid.UUID, provider_name: str, reference: str) -> int:
    provider = context.providers.get(provider_name)
    with context.audit.collecting(), for_payment(payment_id):
        try:
            verdict = provider.lookup(reference)
        except ProviderUnavailable as exc:
            log.warning("a provider could not be asked; next pass", extra={"error": str(exc)})
            return 0
        return apply_lookup(context, verdict)


def apply_lookup(context: PaymentsContext, verdict: ProviderVerdict) -> int:
    """The lookup's verdict, then (a captured payment) what the provider says was refunded of it."""
    kinds = []
    with context.uow() as uow:
        kinds.append(repairs.apply_as_repair(uow, context, verdict, "lookup"))
        refunded = verdict.refunded_total
        if verdict.outcome is Outcome.PAID and verdict.transaction_id and refunded is not None and refunded > ZERO:
            refund = ProviderVerdict(
                verdict.provider,
                Outcome.REFUNDED,
                transaction_id=verdict.transaction_id,
                currency=verdict.currency,
                refunded_total=money(refunded),
                detail=f"{verdict.detail}; {refunded} refunded at {verdict.provider}",
            )
            kinds.append(repairs.apply_as_repair(uow, context, refund, "lookup"))
        context.commit(uow)
    return sum(repairs.count(verdict.provider, kind) for kind in kinds)


# 2. Stripe's events


def reconcile_stripe_events(context: PaymentsContext) -> int:
    stripe = context.providers.stripe
    position = _claim_cursor(context, STRIPE_CURSOR)
    if position is None:
        return 0  # another replica is reading them
    newest, last_id, repaired = position, None, 0
    try:
        events = stripe.events_since(position, REFUND_EVENTS)
        for event in events:
            repaired += _apply_event(context, event)
            newest, last_id = max(newest, int(event.get("created") or 0)), str(event["id"])
    finally:
        _release_cursor(context, STRIPE_CURSOR, newest, last_id)
    return repaired


def _claim_cursor(context: PaymentsContext, name: str) -> int | None:
    """The lease on a cursor and its position (`created` to read from); None while another holds it."""
    now = utcnow()
    start = int(now.timestamp() - context.settings.reconcile_events_lookback)
    with context.uow() as uow:
        session = uow.session
        session.execute(
            upsert_insert(session, CURSORS)
            .values(name=name, position=start, updated_at=now)
            .on_conflict_do_nothing(index_elements=[CURSORS.c.name])
        )
        claimed = session.execute(  # type: ignore[attr-defined]
            update(CURSORS)
            .where(CURSORS.c.name == name, or_(CURSORS.c.claimed_until.is_(None), CURSORS.c.claimed_until < now))
            .values(claimed_until=now + CURSOR_LEASE)
        ).rowcount
        position = session.scalar(select(CURSORS.c.position).where(CURSORS.c.name == name)) if claimed else None
        uow.commit()
    return int(position) if position is not None else None


def _release_cursor(context: PaymentsContext, name: str, position: int, last_id: str | None) -> None:
    values: dict[str, Any] = {"claimed_until": None, "position": position, "updated_at": utcnow()}
    if last_id is not None:
        values["last_event_id"] = last_id
    with context.uow() as uow:
        uow.session.execute(update(CURSORS).where(CURSORS.c.name == name).values(**values))
        uow.commit()


def _apply_event(context: PaymentsContext, event: dict[str, Any]) -> int:
    """Store the event as processed and apply it, in one transaction: if its webhook stored it first,
    the events worker applies it (or did), and a webhook arriving later finds it stored and does
    nothing. The cursor starts each reading at the second of the last one, so events are seen twice;
    the store makes the second time a no-op."""
    stripe = context.providers.stripe
    verdict = stripe.verdict_of_event(event)
    with context.audit.collecting(), context.uow() as uow:
        if verdict is not None and repairs.payment_of(uow.session, verdict) is None:
            # About a payment not recorded as paid yet: kept like a delivered webhook, for the events
            # worker to apply once its success is known (it retries with back-off).
            store_event(uow, stripe.name, event)
            uow.commit()
            return 0
        now = utcnow()
        stored = uow.session.execute(  # type: ignore[attr-defined]
            upsert_insert(uow.session, EVENTS)
            .values(
                id=uuid.uuid4(),
                provider=stripe.name,
                provider_event_id=str(event["id"]),
                event_type=str(event.get("type", ""))[:100],
                payload=event,
                received_at=now,
                processed_at=now,
                outcome="read from the provider's event list",
            )
            .on_conflict_do_nothing(index_elements=[EVENTS.c.provider, EVENTS.c.provider_event_id])
        ).rowcount
        if not stored or verdict is None:
            uow.commit()
            return 0
        kind = repairs.apply_as_repair(uow, context, verdict, "events")
        context.commit(uow)
    return repairs.count(stripe.name, kind)
