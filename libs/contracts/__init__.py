"""Event contracts of the Shop: the envelope and every integration event, versioned."""

from contracts.envelope import Envelope, EventData, new_envelope, parse_data
from contracts.events import (
    EVENT_TYPES,
    OrderCancelled,
    OrderConfirmed,
    OrderLine,
    OrderPlaced,
    PaymentFailed,
    PaymentRefunded,
    PaymentSucceeded,
    RefundRequested,
    Shortage,
    StockCommitted,
    StockRejected,
)

__all__ = [
    "EVENT_TYPES",
    "Envelope",
    "EventData",
    "OrderCancelled",
    "OrderConfirmed",
    "OrderLine",
    "OrderPlaced",
    "PaymentFailed",
    "PaymentRefunded",
    "PaymentSucceeded",
    "RefundRequested",
    "Shortage",
    "StockCommitted",
    "StockRejected",
    "new_envelope",
    "parse_data",
]
