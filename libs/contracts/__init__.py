"""Event contracts of the Shop: the envelope and every integration event, versioned."""

from contracts.envelope import Envelope, EventData, new_envelope, parse_data
from contracts.events import (
    EVENT_TYPES,
    OrderCancelled,
    OrderConfirmed,
    OrderDelivered,
    OrderLine,
    OrderPlaced,
    OrderShipped,
    PaymentFailed,
    PaymentRefunded,
    PaymentSucceeded,
    ProductChanged,
    RefundRequested,
    Shortage,
    StockCommitRequested,
    StockCommitted,
    StockRejected,
)

__all__ = [
    "EVENT_TYPES",
    "Envelope",
    "EventData",
    "OrderCancelled",
    "OrderConfirmed",
    "OrderDelivered",
    "OrderLine",
    "OrderPlaced",
    "OrderShipped",
    "PaymentFailed",
    "PaymentRefunded",
    "PaymentSucceeded",
    "ProductChanged",
    "RefundRequested",
    "Shortage",
    "StockCommitRequested",
    "StockCommitted",
    "StockRejected",
    "new_envelope",
    "parse_data",
]
