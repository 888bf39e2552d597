"""Line validation and pricing at placement: merge, limits, unknown, currencies, stock."""

from __future__ import annotations

import uuid
from decimal import Decimal

import pytest

from orders.domain import (
    CatalogProduct,
    InsufficientStock,
    InvalidLines,
    MixedCurrencies,
    RequestedLine,
    UnknownProducts,
    merge_lines,
    price_lines,
)

pytestmark = pytest.mark.unit


def product(price: str = "10.00", *, stock: int = 10, currency: str = "BDT", active: bool = True) -> CatalogProduct:
    pid = uuid.uuid4()
    return CatalogProduct(pid, f"SKU-{pid.hex[:6]}", "Thing", Decimal(price), currency, stock, active)


def test_repeated_products_merge_in_first_position():
    a, b = uuid.uuid4(), uuid.uuid4()
    merged = merge_lines([RequestedLine(a, 1), RequestedLine(b, 2), RequestedLine(a, 3)])
    assert merged == [RequestedLine(a, 4), RequestedLine(b, 2)]


def test_merged_quantity_above_the_limit_is_refused():
    a = uuid.uuid4()
    with pytest.raises(InvalidLines):
        merge_lines([RequestedLine(a, 600), RequestedLine(a, 401)])
    assert merge_lines([RequestedLine(a, 600), RequestedLine(a, 400)]) == [RequestedLine(a, 1000)]


@pytest.mark.parametrize("quantity", [0, -1, 1001])
def test_quantity_out_of_range_is_refused(quantity):
    with pytest.raises(InvalidLines):
        merge_lines([RequestedLine(uuid.uuid4(), quantity)])


@pytest.mark.parametrize("count", [0, 101])
def test_line_count_out_of_range_is_refused(count):
    with pytest.raises(InvalidLines):
        merge_lines([RequestedLine(uuid.uuid4(), 1) for _ in range(count)])


def test_pricing_snapshots_catalog_values():
    p, q = product("1250.00"), product("0.10")
    currency, lines = price_lines([RequestedLine(p.id, 2), RequestedLine(q.id, 3)], {p.id: p, q.id: q})
    assert currency == "BDT"
    assert [(x.sku, x.unit_price, x.quantity, x.line_total) for x in lines] == [
        (p.sku, Decimal("1250.00"), 2, Decimal("2500.00")),
        (q.sku, Decimal("0.10"), 3, Decimal("0.30")),
    ]


def test_unknown_and_archived_products_are_named():
    archived, missing = product(active=False), uuid.uuid4()
    with pytest.raises(UnknownProducts) as raised:
        price_lines([RequestedLine(archived.id, 1), RequestedLine(missing, 1)], {archived.id: archived})
    assert raised.value.product_ids == [archived.id, missing]


def test_mixed_currencies_are_refused():
    p, q = product(currency="BDT"), product(currency="USD")
    with pytest.raises(MixedCurrencies):
        price_lines([RequestedLine(p.id, 1), RequestedLine(q.id, 1)], {p.id: p, q.id: q})


def test_more_than_stock_is_refused_with_shortages():
    p = product(stock=2)
    with pytest.raises(InsufficientStock) as raised:
        price_lines([RequestedLine(p.id, 3)], {p.id: p})
    assert raised.value.shortages == [(p.id, 3, 2)]
    assert price_lines([RequestedLine(p.id, 2)], {p.id: p})[1][0].quantity == 2


def test_a_total_beyond_the_money_column_is_refused():
    p = product("9999999999.99", stock=1000)
    with pytest.raises(InvalidLines):
        price_lines([RequestedLine(p.id, 2)], {p.id: p})
