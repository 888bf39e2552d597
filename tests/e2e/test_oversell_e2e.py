"""One hundred customers race to buy the last twenty units: exactly twenty win, the others are refunded
once at the provider, and the stock ends at zero, never below."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import pytest

from tools.shopclient import Customer, Http, pay_on_stripe_page, register, stripe_refunds

from .conftest import Shop
from .helpers import admin_of, ledger_by_cause

pytestmark = pytest.mark.e2e

CUSTOMERS = 100
STOCK = 20


async def test_hundred_customers_race_for_twenty_units(shop: Shop) -> None:
    async with Http(limit=CUSTOMERS + 20, retry_for=60) as http:
        admin = await admin_of(http, shop)
        product = await admin.create_product(price="300.00", stock=STOCK)
        customers = await asyncio.gather(*(register(http, shop.gateway) for _ in range(CUSTOMERS)))

        # Placing checks the stock seen now, not units reserved: every customer may place an order.
        orders = await asyncio.gather(*(c.place_order([(product["id"], 1)]) for c in customers))
        payments = await asyncio.gather(
            *(c.start_payment(o["id"], "stripe") for c, o in zip(customers, orders, strict=True))
        )
        pages = await asyncio.gather(*(pay_on_stripe_page(http, p["redirect_url"]) for p in payments))
        assert [p.status for p in pages] == [200] * CUSTOMERS

        async def outcome(customer: Customer, order: dict[str, Any]) -> dict[str, Any]:
            return await customer.wait_order(order["id"], {"confirmed", "refunded", "cancelled"}, within=120)

        finals = await asyncio.gather(*(outcome(c, o) for c, o in zip(customers, orders, strict=True)))
        statuses = Counter(f["status"] for f in finals)
        assert statuses == {"confirmed": STOCK, "refunded": CUSTOMERS - STOCK}

        final_payments = await asyncio.gather(
            *(c.wait_payment(p["id"], {"succeeded", "refunded"}) for c, p in zip(customers, payments, strict=True))
        )
        for order, payment in zip(finals, final_payments, strict=True):
            refunds = await stripe_refunds(http, shop.stripe, payment["provider_transaction_id"])
            if order["status"] == "confirmed":
                assert payment["status"] == "succeeded" and refunds == []
            else:
                assert payment["status"] == "refunded"
                assert len(refunds) == 1, f"payment {payment['id']} refunded {len(refunds)} times"
                assert refunds[0]["amount"] == 30000 and refunds[0]["status"] == "succeeded"

        assert (await admin.product(product["id"]))["stock"] == 0
        movements = await admin.stock_movements(product["id"])
        assert ledger_by_cause(movements) == {"initial": STOCK, "order_commit": -STOCK}
        committed_orders = {m["order_id"] for m in movements if m["cause"] == "order_commit"}
        assert committed_orders == {f["id"] for f in finals if f["status"] == "confirmed"}
        assert min(int(m["stock_after"]) for m in movements) >= 0
