"""Events payments consumes, one function each, run by the kit in a unit of work with the inbox record
(they never commit). None calls a provider: a handler records what is to be done (a refund's ledger
row, a payment to close at its provider) and the workers make the call once the batch committed."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from contracts import OrderCancelled, OrderDelivered, OrderPlaced, OrderShipped, RefundRequested
from payments.domain import Fulfilment
from payments.flows.orders_view import record_fulfilment, record_order_cancelled, record_orders_placed
from payments.flows.refunds import refund_for_order
from payments.providers.registry import ProviderRegistry
from shopkit.consumer import EventHandlers
from shopkit.signals import CommitSignal
from shopkit.uow import UnitOfWork


def on_orders_placed(arrivals: CommitSignal) -> Callable[[Sequence[OrderPlaced], UnitOfWork], None]:
    def handle(events: Sequence[OrderPlaced], uow: UnitOfWork) -> None:
        record_orders_placed(uow, events, arrivals)

    return handle


def on_order_cancelled(event: OrderCancelled, uow: UnitOfWork) -> None:
    record_order_cancelled(uow, event)


def on_order_shipped(event: OrderShipped, uow: UnitOfWork) -> None:
    record_fulfilment(uow, event.order_id, Fulfilment.SHIPPED)


def on_order_delivered(event: OrderDelivered, uow: UnitOfWork) -> None:
    record_fulfilment(uow, event.order_id, Fulfilment.DELIVERED)


def on_refund_requested(providers: ProviderRegistry) -> Callable[[RefundRequested, UnitOfWork], None]:
    max_refunds_of = {provider.name: provider.max_refunds for provider in providers}

    def handle(event: RefundRequested, uow: UnitOfWork) -> None:
        # The request's own event id is its idempotency key: a second RefundRequested (orders asking
        # again) is a second request, and asking for "the rest" when nothing is left is a no-op.
        asked_by = uow.causation.id if uow.causation else f"{event.order_id}-{event.payment_id}-{event.amount}"
        refund_for_order(
            uow,
            order_id=event.order_id,
            payment_id=event.payment_id,
            amount=event.amount,
            reason=event.reason,
            restock=event.restock,
            key=f"event-{asked_by}",
            max_refunds_of=max_refunds_of,
        )

    return handle


def build_handlers(handlers: EventHandlers, providers: ProviderRegistry, arrivals: CommitSignal) -> EventHandlers:
    # The names are the inbox's keys (see the kit-tables-v2 migration): they never change.
    handlers.add_batch(OrderPlaced, on_orders_placed(arrivals), name="order-placed")
    handlers.add(OrderCancelled, on_order_cancelled, name="order-cancelled")
    handlers.add(RefundRequested, on_refund_requested(providers), name="refund-requested")
    handlers.add(OrderShipped, on_order_shipped, name="order-shipped")
    handlers.add(OrderDelivered, on_order_delivered, name="order-delivered")
    return handlers
