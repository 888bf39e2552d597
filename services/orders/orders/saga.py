"""The checkout saga's process manager: `decide(state, fact)` says what an order becomes when one fact
reaches it (another service's event, the payment timeout, the sweeper, a customer's or an admin's
action), which messages it sends and what its timeline records.

Pure: no database, no broker, no clock (times travel in the facts). Events arrive at least once and in
any order, so every rule looks at the state it finds and does only what is still missing:
- a stock answer for an unpaid order proves the payment (the catalog only answers payments);
- a refund can overtake the success of its own payment: it is remembered and applied when that
  payment becomes the paying one;
- a payment other than the paying one (a second payment, a success after cancellation) is refunded;
- refunded amounts are the payment's running total (`refunded_amount` of PaymentRefunded v2), so a
  refund seen twice counts once.
Handlers, jobs and routes load the state under the order's row lock, call `decide`, store the new
state with the timeline and put the messages in the outbox, all in one unit of work."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import Decimal
from typing import Any, TypeAlias

from contracts import (
    EventData,
    OrderCancelled,
    OrderConfirmed,
    OrderDelivered,
    OrderLine,
    OrderShipped,
    PaymentFailed,
    PaymentRefunded,
    PaymentSucceeded,
    RefundRequested,
    StockCommitRequested,
    StockCommitted,
    StockRejected,
)
from orders.domain import OrderStatus, transition

S = OrderStatus
ZERO = Decimal("0.00")


class Refused(Exception):
    """An action asked for by a person that the order's state does not allow (409)."""


# --- the state ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SeenRefund:
    """A refund of a payment that is not (yet) the paying one. `refunded`: the payment's running
    refunded total, None for all of it (a v1 event)."""

    payment_id: uuid.UUID
    refunded: Decimal | None
    fully: bool
    reason: str


@dataclass(frozen=True)
class Shipment:
    carrier: str
    tracking_number: str
    shipped_at: datetime
    delivered_at: datetime | None = None


@dataclass(frozen=True)
class OrderState:
    order_id: uuid.UUID
    user_id: uuid.UUID
    status: OrderStatus
    total_amount: Decimal
    currency: str
    payment_id: uuid.UUID | None = None
    payment_provider: str | None = None
    # Money given back of the paying payment (refunds of other payments are not the order's).
    refunded_amount: Decimal = ZERO
    refunds_seen: tuple[SeenRefund, ...] = ()
    # The order has a shipping address (else it is picked up, and never shipped).
    ships: bool = False
    shipment: Shipment | None = None

    def seen_refund(self, payment_id: uuid.UUID | None) -> SeenRefund | None:
        return next((r for r in self.refunds_seen if r.payment_id == payment_id), None)


# --- the facts that are not events of another service ----------------------------------------------------


@dataclass(frozen=True)
class PaymentTimedOut:
    """The payment window closed (the timeout job)."""


@dataclass(frozen=True)
class CancelRequested:
    """The customer cancels."""


@dataclass(frozen=True)
class ShipRequested:
    carrier: str
    tracking_number: str
    at: datetime


@dataclass(frozen=True)
class DeliverRequested:
    at: datetime


@dataclass(frozen=True)
class Redrive:
    """The sweeper found the order waiting too long for another service; `items` are its lines."""

    items: tuple[OrderLine, ...] = ()


Fact: TypeAlias = (
    PaymentSucceeded
    | PaymentFailed
    | StockCommitted
    | StockRejected
    | PaymentRefunded
    | PaymentTimedOut
    | CancelRequested
    | ShipRequested
    | DeliverRequested
    | Redrive
)


# --- the decision ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Note:
    """One timeline entry: the status after it, and why."""

    status: OrderStatus
    reason: str


@dataclass(frozen=True)
class Decision:
    state: OrderState
    messages: tuple[EventData, ...] = ()
    timeline: tuple[Note, ...] = ()


@dataclass
class _Course:
    """The decision being built, in the order things happen (local to one `decide` call)."""

    state: OrderState
    messages: list[EventData] = field(default_factory=list)
    timeline: list[Note] = field(default_factory=list)

    def move(self, target: OrderStatus, reason: str) -> None:
        self.state = replace(self.state, status=transition(self.state.status, target))
        self.timeline.append(Note(self.state.status, reason))

    def note(self, reason: str) -> None:
        self.timeline.append(Note(self.state.status, reason))

    def send(self, message: EventData) -> None:
        self.messages.append(message)

    def update(self, **changes: Any) -> None:
        self.state = replace(self.state, **changes)

    def decision(self) -> Decision:
        return Decision(self.state, tuple(self.messages), tuple(self.timeline))


def decide(state: OrderState, fact: Fact) -> Decision:
    """The new state, the messages to send and the timeline entries; raises Refused for an action
    (cancel, ship, deliver) the state does not allow. Events never raise: one that changes nothing
    gives back the same state."""
    course = _Course(state)
    _RULES[type(fact)](course, fact)
    return course.decision()


# --- payments -----------------------------------------------------------------------------------------


def _payment_succeeded(c: _Course, event: PaymentSucceeded) -> None:
    s, payment = c.state, event.payment_id
    if s.status == S.PENDING_PAYMENT:
        c.update(payment_id=payment, payment_provider=event.provider)
        c.move(S.PAID, f"payment {payment} succeeded ({event.provider})")
        _apply_seen_refund(c)
    elif s.status == S.CANCELLED:
        _refund_stray_payment(
            c, payment, "succeeded after cancellation", "the order was cancelled before the payment succeeded"
        )
    elif s.payment_id in (None, payment):
        # The same payment again, or the one a stock event already named: fill in what is missing.
        c.update(payment_id=payment, payment_provider=s.payment_provider or event.provider)
    else:
        _refund_stray_payment(c, payment, "is a second payment", f"the order is already paid by payment {s.payment_id}")


def _refund_stray_payment(c: _Course, payment: uuid.UUID, what: str, reason: str) -> None:
    seen = c.state.seen_refund(payment)
    if seen is not None and seen.fully:
        c.note(f"payment {payment} {what}; it is already refunded")
        return
    c.note(f"payment {payment} {what}; refund requested")
    c.send(RefundRequested(order_id=c.state.order_id, payment_id=payment, reason=reason))


def _apply_seen_refund(c: _Course) -> None:
    """The paying payment's refund overtook its success: apply it now, as if in order."""
    seen = c.state.seen_refund(c.state.payment_id)
    if seen is None:
        return
    refunded = seen.refunded if seen.refunded is not None else c.state.total_amount
    c.update(
        refunds_seen=tuple(r for r in c.state.refunds_seen if r is not seen),
        refunded_amount=max(c.state.refunded_amount, refunded),
    )
    if seen.fully:
        c.move(S.REFUND_PENDING, f"payment {seen.payment_id} was already refunded")
        c.move(S.REFUNDED, f"payment {seen.payment_id} refunded: {seen.reason}")
    else:
        c.note(f"payment {seen.payment_id} was already partly refunded ({refunded}): {seen.reason}")


def _payment_failed(c: _Course, event: PaymentFailed) -> None:
    # The order stays payable: the customer may try again with another payment.
    c.note(f"payment {event.payment_id} failed ({event.provider}): {event.reason}")


def _payment_refunded(c: _Course, event: PaymentRefunded) -> None:
    s, payment = c.state, event.payment_id
    refunded = event.refunded_amount if event.refunded_amount is not None else event.amount
    if s.payment_id is None or s.payment_id != payment:
        _remember_refund(c, SeenRefund(payment, refunded, event.fully_refunded, event.reason))
        return
    grew = refunded > s.refunded_amount
    if grew:
        c.update(refunded_amount=refunded)
    if not event.fully_refunded:
        if grew:
            c.note(f"payment {payment} partly refunded ({event.amount}; {refunded} in all): {event.reason}")
        return
    if s.status in (S.PAID, S.CONFIRMED, S.SHIPPED, S.DELIVERED):
        # Refunded without the order asking (an admin's refund): pass through refund_pending.
        c.move(S.REFUND_PENDING, f"refund of payment {payment}: {event.reason}")
    if c.state.status == S.REFUND_PENDING:
        c.move(S.REFUNDED, f"payment {payment} refunded: {event.reason}")


def _remember_refund(c: _Course, refund: SeenRefund) -> None:
    earlier = c.state.seen_refund(refund.payment_id)
    c.note(f"payment {refund.payment_id} {'refunded' if refund.fully else 'partly refunded'}: {refund.reason}")
    if earlier is not None:
        if earlier.fully or (not refund.fully and (refund.refunded or ZERO) <= (earlier.refunded or ZERO)):
            return  # what we hold already says as much
    kept = tuple(r for r in c.state.refunds_seen if r.payment_id != refund.payment_id)
    c.update(refunds_seen=(*kept, refund))


# --- stock ----------------------------------------------------------------------------------------------


def _paid_per_catalog(c: _Course, payment: uuid.UUID | None) -> None:
    """The catalog only answers a PaymentSucceeded, so its answer for an unpaid order proves the
    payment: record it as the paying one before moving on."""
    c.update(payment_id=c.state.payment_id or payment)
    c.move(S.PAID, f"payment {payment} succeeded (learnt from the catalog)")
    _apply_seen_refund(c)


def _stock_committed(c: _Course, event: StockCommitted) -> None:
    if c.state.status == S.PENDING_PAYMENT:
        _paid_per_catalog(c, event.payment_id)
    s = c.state
    if s.status == S.PAID:
        if event.payment_id is not None and s.payment_id is not None and event.payment_id != s.payment_id:
            # The catalog committed the stock for another payment of this order, and it releases stock
            # only on that payment's refund: that payment pays the order, the one we held is refunded.
            c.note(f"stock committed for payment {event.payment_id}, which pays the order; {s.payment_id} is refunded")
            c.send(
                RefundRequested(
                    order_id=s.order_id, payment_id=s.payment_id, reason=f"the order is paid by {event.payment_id}"
                )
            )
            c.update(payment_id=event.payment_id, payment_provider=None)
        c.move(S.CONFIRMED, "stock committed")
        c.send(OrderConfirmed(order_id=s.order_id, user_id=s.user_id, total_amount=s.total_amount, currency=s.currency))
    elif s.status in (S.CANCELLED, S.REFUND_PENDING, S.REFUNDED):
        # The catalog releases this stock when the payment it was committed for is refunded.
        c.note(f"stock committed while {s.status}; it is released on refund")


def _stock_rejected(c: _Course, event: StockRejected) -> None:
    if c.state.status == S.PENDING_PAYMENT:
        _paid_per_catalog(c, event.payment_id)
    s = c.state
    if s.status == S.PAID:
        shortages = ", ".join(f"{x.product_id} ({x.requested} > {x.available})" for x in event.shortages)
        c.move(S.REFUND_PENDING, f"stock rejected: {shortages or 'unavailable'}")
        c.send(
            RefundRequested(
                order_id=s.order_id, payment_id=s.payment_id or event.payment_id, reason="stock unavailable"
            )
        )
    elif s.status in (S.CANCELLED, S.CONFIRMED, S.SHIPPED, S.DELIVERED):
        c.note(f"stock rejected while {s.status}")


# --- time and people ------------------------------------------------------------------------------------


def _payment_timed_out(c: _Course, _fact: PaymentTimedOut) -> None:
    if c.state.status == S.PENDING_PAYMENT:
        _cancel(c, "payment timeout")


def _cancel_requested(c: _Course, _fact: CancelRequested) -> None:
    if c.state.status != S.PENDING_PAYMENT:
        raise Refused(f"an order can be cancelled only while pending_payment; it is {c.state.status}")
    _cancel(c, "cancelled by the customer")


def _cancel(c: _Course, reason: str) -> None:
    c.move(S.CANCELLED, reason)
    c.send(OrderCancelled(order_id=c.state.order_id, user_id=c.state.user_id, reason=reason))


def _ship_requested(c: _Course, fact: ShipRequested) -> None:
    s = c.state
    if s.status != S.CONFIRMED:
        raise Refused(f"an order can be shipped only when confirmed; it is {s.status}")
    if not s.ships:
        raise Refused("the order has no shipping address: it is picked up, not shipped")
    c.update(shipment=Shipment(fact.carrier, fact.tracking_number, fact.at))
    c.move(S.SHIPPED, f"shipped with {fact.carrier}, tracking number {fact.tracking_number}")
    c.send(
        OrderShipped(
            order_id=s.order_id,
            user_id=s.user_id,
            carrier=fact.carrier,
            tracking_number=fact.tracking_number,
            shipped_at=fact.at,
        )
    )


def _deliver_requested(c: _Course, fact: DeliverRequested) -> None:
    s = c.state
    if s.status != S.SHIPPED or s.shipment is None:
        raise Refused(f"an order can be delivered only when shipped; it is {s.status}")
    c.update(shipment=replace(s.shipment, delivered_at=fact.at))
    c.move(S.DELIVERED, "delivered")
    c.send(OrderDelivered(order_id=s.order_id, user_id=s.user_id, delivered_at=fact.at))


def _redrive(c: _Course, fact: Redrive) -> None:
    """Ask again for what the order waits on. The catalog answers a repeated commit request with the
    decision it took, and payments refunds a payment once, so asking twice is harmless."""
    s = c.state
    if s.status == S.PAID and s.payment_id is not None:
        c.send(StockCommitRequested(order_id=s.order_id, payment_id=s.payment_id, items=list(fact.items)))
    elif s.status == S.REFUND_PENDING:
        c.send(RefundRequested(order_id=s.order_id, payment_id=s.payment_id, reason="refund still pending (re-driven)"))


_RULES: dict[type, Callable[[_Course, Any], None]] = {
    PaymentSucceeded: _payment_succeeded,
    PaymentFailed: _payment_failed,
    PaymentRefunded: _payment_refunded,
    StockCommitted: _stock_committed,
    StockRejected: _stock_rejected,
    PaymentTimedOut: _payment_timed_out,
    CancelRequested: _cancel_requested,
    ShipRequested: _ship_requested,
    DeliverRequested: _deliver_requested,
    Redrive: _redrive,
}

# Statuses in which the sweeper looks for orders that wait on another service.
WAITING = frozenset({S.PAID, S.REFUND_PENDING})
