"""Small shared steps of the end-to-end tests (what an admin and a customer do through the gateway)."""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from decimal import Decimal
from typing import Any

from tools.shopclient import TERMINAL_ORDER_STATUSES, Customer, Http, login, stripe_refunds

from .conftest import ADMIN_EMAIL, ADMIN_PASSWORD, Shop


async def admin_of(http: Http, shop: Shop) -> Customer:
    return await login(http, shop.gateway, ADMIN_EMAIL, ADMIN_PASSWORD)


def ledger_by_cause(movements: list[dict[str, Any]]) -> Counter[str]:
    """Units moved per ledger cause (order_commit and release deltas summed)."""
    totals: Counter[str] = Counter()
    for movement in movements:
        totals[movement["cause"]] += int(movement["delta"])
    return totals


def line_total(order: dict[str, Any]) -> Decimal:
    return sum((Decimal(item["line_total"]) for item in order["items"]), Decimal("0"))


async def settle_and_verify(
    http: Http,
    orders: dict[str, Customer],
    admin: Customer,
    products: list[str],
    stripe_url: str,
    *,
    within: float,
) -> dict[str, dict[str, Any]]:
    """Every order reaches a terminal state within `within` seconds, nobody is charged twice or keeps
    money for an order they did not get, no stock is committed twice, and units sold + units left =
    units received. Returns each order's final state."""
    deadline = time.monotonic() + within
    finals: dict[str, dict[str, Any]] = {}
    for order_id, customer in orders.items():
        remaining = max(1.0, deadline - time.monotonic())
        finals[order_id] = await customer.wait_order(order_id, TERMINAL_ORDER_STATUSES, within=remaining)

    sold: Counter[str] = Counter()
    for order_id, order in finals.items():
        customer = orders[order_id]
        payments = await customer.payments_of(order_id)
        succeeded = [p for p in payments if p["status"] == "succeeded"]
        assert len(succeeded) <= 1, f"order {order_id} charged {len(succeeded)} times"
        if order["status"] == "confirmed":
            assert len(succeeded) == 1, f"confirmed order {order_id} has no standing payment: {payments}"
            assert Decimal(succeeded[0]["amount"]) == Decimal(order["total_amount"])
            for item in order["items"]:
                sold[item["product_id"]] += int(item["quantity"])
        else:
            assert succeeded == [], f"{order['status']} order {order_id} keeps a payment: {payments}"
        for payment in payments:
            if payment["provider_transaction_id"]:
                refunds = await stripe_refunds(http, stripe_url, payment["provider_transaction_id"])
                expected = 1 if payment["status"] == "refunded" else 0
                assert len(refunds) == expected, f"payment {payment['id']} refunded {len(refunds)} times"

    confirmed = {order_id for order_id, o in finals.items() if o["status"] == "confirmed"}
    for product_id in products:
        movements = await admin.stock_movements(product_id)
        net_per_order: dict[str, int] = defaultdict(int)
        commits_per_order: Counter[str] = Counter()
        for movement in movements:
            if movement["cause"] in ("order_commit", "release"):
                net_per_order[movement["order_id"]] += int(movement["delta"])
            if movement["cause"] == "order_commit":
                commits_per_order[movement["order_id"]] += 1
        assert max(commits_per_order.values(), default=0) <= 1, "an order's stock was committed twice"
        for order_id, net in net_per_order.items():
            if order_id in confirmed:
                assert net < 0
            else:
                assert net == 0, f"order {order_id} ({finals.get(order_id, {}).get('status')}) moved {net}"
        received = sum(int(m["delta"]) for m in movements if m["cause"] in ("initial", "adjustment"))
        left = (await admin.product(product_id))["stock"]
        assert sold[product_id] + left == received
        assert -sum(net_per_order.values()) == sold[product_id]
    return finals
