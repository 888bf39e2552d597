"""Orders left unpaid are cancelled after the payment timeout; a payment that completes after the
cancellation is refunded automatically and the stock ends where it started."""

from __future__ import annotations

import asyncio
import signal

import pytest

from tools.shopclient import Http, pay_on_stripe_page, register, stripe_refunds

from .conftest import Shop
from .helpers import admin_of

pytestmark = pytest.mark.e2e


async def test_unpaid_order_is_cancelled_after_the_payment_timeout(impatient_shop: Shop) -> None:
    shop = impatient_shop
    async with Http() as http:
        admin = await admin_of(http, shop)
        product = await admin.create_product(price="75.00", stock=3)
        customer = await register(http, shop.gateway)
        order = await customer.place_order([(product["id"], 2)])
        assert order["status"] == "pending_payment"

        cancelled = await customer.wait_order(order["id"], {"cancelled", "confirmed", "refunded"}, within=60)
        assert cancelled["status"] == "cancelled"
        assert cancelled["timeline"][-1]["status"] == "cancelled"
        # A cancelled order cannot be paid for any more.
        retry = await customer.call("POST", "/api/payments", json={"order_id": order["id"], "provider": "stripe"})
        assert retry.status == 409
        assert (await customer.product(product["id"]))["stock"] == 3


async def test_payment_completed_after_the_timeout_is_refunded(impatient_shop: Shop) -> None:
    shop = impatient_shop
    async with Http(retry_for=60) as http:
        admin = await admin_of(http, shop)
        product = await admin.create_product(price="120.00", stock=4)
        customer = await register(http, shop.gateway)
        order = await customer.place_order([(product["id"], 1)])
        payment = await customer.start_payment(order["id"], "stripe")

        # With payments down the cancellation cannot expire the Checkout Session, so the customer can
        # still pay on the provider's page after the order has been cancelled (as a slow customer can
        # on the real Stripe, whose session outlives our timeout).
        shop.cluster.kill("payments", signal.SIGTERM, hold=True)
        await asyncio.to_thread(shop.cluster.wait_exit, "payments", 15)
        try:
            cancelled = await customer.wait_order(order["id"], {"cancelled", "confirmed", "refunded"}, within=60)
            assert cancelled["status"] == "cancelled"
            page = await pay_on_stripe_page(http, payment["redirect_url"])
            assert page.status == 200, page.body
        finally:
            await asyncio.to_thread(shop.cluster.restart, "payments")
        await asyncio.to_thread(shop.cluster.wait_ready, 60, ["payments"])

        refunded = await customer.wait_payment(payment["id"], {"refunded"}, within=90)
        assert refunded["provider_transaction_id"]
        refunds = await stripe_refunds(http, shop.stripe, refunded["provider_transaction_id"])
        assert len(refunds) == 1 and refunds[0]["amount"] == 12000

        assert (await customer.order(order["id"]))["status"] == "cancelled"
        # Whatever the catalog did with the late PaymentSucceeded it has undone: the stock is whole.
        for _ in range(40):
            if (await customer.product(product["id"]))["stock"] == 4:
                break
            await asyncio.sleep(0.5)
        assert (await customer.product(product["id"]))["stock"] == 4
        movements = await admin.stock_movements(product["id"])
        assert sum(int(m["delta"]) for m in movements) == 4
