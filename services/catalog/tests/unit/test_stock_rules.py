"""Stock rules, no I/O: what an order needs, what is short, what an adjustment may do, search terms."""

from __future__ import annotations

import uuid
from decimal import Decimal

import pytest

from catalog import domain
from catalog.domain import StockLevel
from contracts import OrderLine, Shortage

pytestmark = pytest.mark.unit


def line(product_id: uuid.UUID, quantity: int) -> OrderLine:
    return OrderLine(product_id=product_id, sku="S", name="N", unit_price=Decimal("1.00"), quantity=quantity)


def test_quantities_are_summed_per_product_and_in_ascending_id_order() -> None:
    low, high = sorted([uuid.uuid4(), uuid.uuid4()])
    wanted = domain.quantities_by_product([line(high, 1), line(low, 2), line(high, 3)])
    assert list(wanted.items()) == [(low, 2), (high, 4)]


def test_no_shortage_when_every_line_fits_exactly() -> None:
    a, b = uuid.uuid4(), uuid.uuid4()
    assert domain.shortages({a: 2, b: 5}, {a: StockLevel(2, True), b: StockLevel(9, True)}) == []


def test_unknown_archived_and_insufficient_products_are_short() -> None:
    enough, scarce, archived, unknown = (uuid.uuid4() for _ in range(4))
    levels = {enough: StockLevel(10, True), scarce: StockLevel(1, True), archived: StockLevel(50, False)}
    short = domain.shortages({enough: 3, scarce: 2, archived: 1, unknown: 4}, levels)
    assert short == [
        Shortage(product_id=scarce, requested=2, available=1),
        Shortage(product_id=archived, requested=1, available=0),
        Shortage(product_id=unknown, requested=4, available=0),
    ]


@pytest.mark.parametrize(("stock", "delta", "expected"), [(0, 5, 5), (5, -5, 0), (3, -1, 2)])
def test_adjustments_within_bounds(stock: int, delta: int, expected: int) -> None:
    assert domain.adjusted_stock(stock, delta) == expected


@pytest.mark.parametrize(("stock", "delta"), [(2, -3), (0, -1), (domain.MAX_STOCK, 1)])
def test_adjustments_outside_bounds_are_refused(stock: int, delta: int) -> None:
    with pytest.raises(domain.StockRuleBroken):
        domain.adjusted_stock(stock, delta)


@pytest.mark.parametrize(
    ("q", "terms", "tsquery"),
    [
        ("Miniket Rice", ["miniket", "rice"], "miniket:* & rice:*"),
        ("OIL-SOY-5", ["oil", "soy", "5"], "oil:* & soy:* & 5:*"),
        ("'&|!:*() rice", ["rice"], "rice:*"),
        ("!!!", [], ""),
    ],
)
def test_search_terms_keep_only_words(q: str, terms: list[str], tsquery: str) -> None:
    assert domain.search_terms(q) == terms
    assert domain.prefix_tsquery(terms) == tsquery


def test_a_batch_is_decided_in_arrival_order_until_the_stock_runs_out() -> None:
    hot = uuid.uuid4()
    orders = [{hot: 2}, {hot: 2}, {hot: 2}, {hot: 1}]
    decisions = domain.decide_in_order(orders, {hot: StockLevel(5, True)})
    assert [d.committed for d in decisions] == [True, True, False, True]
    assert [d.movements for d in decisions] == [{hot: (-2, 3)}, {hot: (-2, 1)}, {}, {hot: (-1, 0)}]
    # The rejected order saw what the two before it left, not the stock the batch started with.
    assert decisions[2].shortages == [Shortage(product_id=hot, requested=2, available=1)]
    assert domain.net_deltas(decisions) == {hot: -5}


def test_an_order_short_on_one_line_takes_nothing_from_its_other_lines() -> None:
    plenty, scarce = sorted([uuid.uuid4(), uuid.uuid4()])
    levels = {plenty: StockLevel(10, True), scarce: StockLevel(1, True)}
    decisions = domain.decide_in_order([{plenty: 3, scarce: 2}, {plenty: 3, scarce: 1}], levels)
    assert [d.committed for d in decisions] == [False, True]
    assert decisions[1].movements == {plenty: (-3, 7), scarce: (-1, 0)}
    assert domain.net_deltas(decisions) == {plenty: -3, scarce: -1}


def test_nothing_decided_moves_nothing() -> None:
    assert domain.decide_in_order([], {}) == []
    assert domain.net_deltas([]) == {}


@pytest.mark.parametrize(
    "url",
    [
        "https://cdn.example.com/rice.jpg",
        "https://cdn.example.com:8443/p/rice%20bag.png?w=640&h=480#top",
        "https://[2001:db8::1]/x.webp",
    ],
)
def test_plain_https_image_urls_are_accepted(url: str) -> None:
    assert domain.checked_image_url(url) == url


@pytest.mark.parametrize(
    "url",
    [
        "javascript:alert(1)",
        "JavaScript:alert(1)",
        "http://cdn.example.com/rice.jpg",
        "data:image/png;base64,iVBORw0KGgo=",
        "//cdn.example.com/rice.jpg",
        "ftp://cdn.example.com/rice.jpg",
        "HTTPS://cdn.example.com/rice.jpg",
        "https://",
        "https:///rice.jpg",
        "https://user:secret@cdn.example.com/rice.jpg",
        "https://cdn.example.com:99999/rice.jpg",
        "https://cdn.example.com:port/rice.jpg",
        "https://cdn.example.com/rice.jpg\n",
        "https://cdn.example.com/ rice.jpg",
        'https://cdn.example.com/"onerror=alert(1)',
        "https://cdn.example.com/'onerror=alert(1)",
        "https://cdn.example.com/<script>",
        "https://cdn.example.com\\@evil.example/",
        "https://ríce.example/",
        " https://cdn.example.com/rice.jpg",
        "",
    ],
)
def test_anything_but_a_plain_https_image_url_is_refused(url: str) -> None:
    with pytest.raises(ValueError):
        domain.checked_image_url(url)
