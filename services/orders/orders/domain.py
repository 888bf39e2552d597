"""Rules of an order with no I/O: the status table, line validation, pricing from the product view.
What moves an order along the table is decided in saga.py."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum

MAX_LINES = 100
MAX_QUANTITY = 1000
CENT = Decimal("0.01")
# Numeric(12, 2) holds at most this; a larger total would fail in the database instead of answering 422.
MAX_AMOUNT = Decimal("9999999999.99")


class OrderStatus(StrEnum):
    PENDING_PAYMENT = "pending_payment"
    PAID = "paid"
    CONFIRMED = "confirmed"
    SHIPPED = "shipped"
    DELIVERED = "delivered"
    CANCELLED = "cancelled"
    REFUND_PENDING = "refund_pending"
    REFUNDED = "refunded"


S = OrderStatus

# The only moves an order may make. Anything else is a bug or a stale event and must not be applied.
TRANSITIONS: Mapping[OrderStatus, frozenset[OrderStatus]] = {
    S.PENDING_PAYMENT: frozenset({S.PAID, S.CANCELLED}),
    S.PAID: frozenset({S.CONFIRMED, S.REFUND_PENDING}),
    S.CONFIRMED: frozenset({S.SHIPPED, S.REFUND_PENDING}),
    S.SHIPPED: frozenset({S.DELIVERED, S.REFUND_PENDING}),
    S.DELIVERED: frozenset({S.REFUND_PENDING}),
    S.REFUND_PENDING: frozenset({S.REFUNDED}),
    S.CANCELLED: frozenset(),
    S.REFUNDED: frozenset(),
}

TERMINAL = frozenset(status for status, targets in TRANSITIONS.items() if not targets)


class InvalidTransition(Exception):
    def __init__(self, current: OrderStatus, target: OrderStatus) -> None:
        super().__init__(f"an order cannot go from {current} to {target}")
        self.current = current
        self.target = target


def transition(current: OrderStatus | str, target: OrderStatus | str) -> OrderStatus:
    """The new status, or InvalidTransition when the table forbids the move."""
    current, target = OrderStatus(current), OrderStatus(target)
    if target not in TRANSITIONS[current]:
        raise InvalidTransition(current, target)
    return target


def can_transition(current: OrderStatus | str, target: OrderStatus | str) -> bool:
    return OrderStatus(target) in TRANSITIONS[OrderStatus(current)]


# --- placing an order -------------------------------------------------------------------------------


class OrderRejected(Exception):
    """The requested order cannot be placed as asked."""


class InvalidLines(OrderRejected):
    """Malformed request (422)."""


class UnknownProducts(OrderRejected):
    """Some products do not exist or are archived (422)."""

    def __init__(self, product_ids: list[uuid.UUID]) -> None:
        super().__init__("unknown or archived products: " + ", ".join(str(p) for p in product_ids))
        self.product_ids = product_ids


class MixedCurrencies(OrderRejected):
    """An order is paid in one currency (422)."""


class InsufficientStock(OrderRejected):
    """More than the current stock (409)."""

    def __init__(self, shortages: list[tuple[uuid.UUID, int, int]]) -> None:
        super().__init__(
            "not enough stock: " + ", ".join(f"{p} (requested {want}, available {have})" for p, want, have in shortages)
        )
        self.shortages = shortages


@dataclass(frozen=True)
class RequestedLine:
    product_id: uuid.UUID
    quantity: int


@dataclass(frozen=True)
class CatalogProduct:
    id: uuid.UUID
    sku: str
    name: str
    price: Decimal
    currency: str
    stock: int
    is_active: bool


@dataclass(frozen=True)
class PricedLine:
    product_id: uuid.UUID
    sku: str
    name: str
    unit_price: Decimal
    quantity: int

    @property
    def line_total(self) -> Decimal:
        return (self.unit_price * self.quantity).quantize(CENT)


def merge_lines(lines: Iterable[RequestedLine]) -> list[RequestedLine]:
    """Repeated products are merged (quantities summed, first position kept): one line per product
    is what the catalog commits and what the customer means. The merged quantity obeys the same limit."""
    merged: dict[uuid.UUID, int] = {}
    for line in lines:
        if not 1 <= line.quantity <= MAX_QUANTITY:
            raise InvalidLines(f"quantity must be between 1 and {MAX_QUANTITY}")
        merged[line.product_id] = merged.get(line.product_id, 0) + line.quantity
    if not 1 <= len(merged) <= MAX_LINES:
        raise InvalidLines(f"an order has between 1 and {MAX_LINES} lines")
    too_many = [str(p) for p, q in merged.items() if q > MAX_QUANTITY]
    if too_many:
        raise InvalidLines(f"quantity of a product must not exceed {MAX_QUANTITY} in total: " + ", ".join(too_many))
    return [RequestedLine(p, q) for p, q in merged.items()]


def price_lines(
    lines: list[RequestedLine], products: Mapping[uuid.UUID, CatalogProduct]
) -> tuple[str, list[PricedLine]]:
    """Snapshot the products' current sku, name and price into the lines. Returns (currency, lines).
    The stock compared is the product view's, which is advisory: the catalog's commit decides."""
    unknown = [
        line.product_id for line in lines if line.product_id not in products or not products[line.product_id].is_active
    ]
    if unknown:
        raise UnknownProducts(unknown)
    currencies = {products[line.product_id].currency for line in lines}
    if len(currencies) > 1:
        raise MixedCurrencies("all products of an order must share one currency: " + ", ".join(sorted(currencies)))
    shortages = [
        (line.product_id, line.quantity, products[line.product_id].stock)
        for line in lines
        if line.quantity > products[line.product_id].stock
    ]
    if shortages:
        raise InsufficientStock(shortages)
    priced = [
        PricedLine(
            product_id=line.product_id,
            sku=products[line.product_id].sku,
            name=products[line.product_id].name,
            unit_price=products[line.product_id].price,
            quantity=line.quantity,
        )
        for line in lines
    ]
    if sum((line.line_total for line in priced), Decimal(0)) > MAX_AMOUNT:
        raise InvalidLines("the order total is too large")
    return currencies.pop(), priced
