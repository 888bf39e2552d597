"""The payments attacks through the gateway, as raw requests from outside, against the whole shop; and an
admin's partial refund of a confirmed order, as payments records it."""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal

import aiohttp
import pytest

from tools.shopclient import BKASH_OTP, BKASH_PIN, BKASH_WALLET, Http, expect, register

from .conftest import Shop
from .helpers import admin_of

pytestmark = pytest.mark.e2e


async def test_a_forged_bkash_cancel_while_the_customer_pays_does_not_stop_the_order(shop: Shop) -> None:
    async with Http() as http:
        admin = await admin_of(http, shop)
        product = await admin.create_product(price="860.00", stock=3)
        customer = await register(http, shop.gateway)
        order = await customer.place_order([(product["id"], 1)])
        payment = await customer.start_payment(order["id"], "bkash")
        page = payment["redirect_url"]
        for step, value in (("wallet", BKASH_WALLET), ("otp", BKASH_OTP)):  # the customer is on bKash's page
            expect(await http.request("POST", f"{page}/{step}", data={step: value}, allow_redirects=False), 303)

        async with aiohttp.ClientSession() as anonymous:  # no token, no cookie: the victim's paymentID
            forged_url = (
                f"{shop.gateway}/api/payments/bkash/callback?paymentID={payment['provider_reference']}&status=cancel"
            )
            async with anonymous.get(forged_url) as forged:
                assert forged.status == 200
                assert (await forged.json())["status"] == "initiated"
        assert (await customer.payment(payment["id"]))["status"] == "initiated"

        pin = await http.request("POST", f"{page}/pin", data={"pin": BKASH_PIN}, allow_redirects=False)
        expect(pin, 303, what="bkash pin")
        landed = await http.request("GET", pin.headers["Location"])

        assert landed.body["status"] == "succeeded"
        confirmed = await customer.wait_order(order["id"], {"confirmed", "refunded", "cancelled"})
        assert confirmed["status"] == "confirmed", confirmed["timeline"]


async def test_out_of_range_paging_and_unsigned_webhooks_are_refused_through_the_gateway(shop: Shop) -> None:
    async with Http() as http:
        customer = await register(http, shop.gateway)
        huge = await customer.call("GET", "/api/payments?page=100000000000000000000", retry=False)
        assert huge.status == 422 and huge.headers["Content-Type"].startswith("application/problem+json")
        unsigned = await http.request(
            "POST",
            f"{shop.gateway}/api/payments/webhooks/stripe",
            data=b'{"id": "evt_forged", "type": "checkout.session.completed"}',
            headers={"Content-Type": "application/json", "Stripe-Signature": "t=1,v1=00"},
            retry=False,
        )
        assert unsigned.status == 400


async def test_an_admin_refunds_part_of_a_confirmed_order(shop: Shop) -> None:
    async with Http() as http:
        admin = await admin_of(http, shop)
        product = await admin.create_product(price="500.00", stock=4)
        customer = await register(http, shop.gateway)
        order = await customer.place_order([(product["id"], 2)])
        payment = await customer.start_payment(order["id"], "stripe")
        expect(await http.request("POST", f"{payment['redirect_url']}/pay", data={"outcome": "success"}), 200)
        await customer.wait_order(order["id"], {"confirmed"})

        refund = await admin.call(
            "POST", f"/api/payments/{payment['id']}/refund", json={"reason": "one arrived broken", "amount": "250.00"}
        )
        assert refund.status == 202, refund.body
        refunded = await customer.wait_payment(payment["id"], {"partially_refunded"})
        assert Decimal(refunded["refunded_amount"]) == Decimal("250.00")
        too_much = await admin.call(
            "POST", f"/api/payments/{payment['id']}/refund", json={"reason": "again", "amount": "750.01"}
        )
        assert too_much.status == 422
        listed = await admin.call("GET", f"/api/payments?order_id={order['id']}")
        [row] = listed.body["items"]
        assert (row["status"], row["captured_amount"], row["refunded_amount"]) == (
            "partially_refunded",
            "1000.00",
            "250.00",
        )
        # The order keeps its status and counts the refund; a partial refund restocks only when asked.
        partly = await customer.order(order["id"])
        assert (partly["status"], partly["refunded_amount"]) == ("confirmed", "250.00"), partly["timeline"]
        assert (await customer.product(product["id"]))["stock"] == 2

        rest = await admin.call("POST", f"/api/payments/{payment['id']}/refund", json={"reason": "returned"})
        assert rest.status == 202, rest.body
        refunded_order = await customer.wait_order(order["id"], {"refunded"})
        assert refunded_order["refunded_amount"] == "1000.00"
        # The rest of an order that was not shipped: its stock goes back on the shelf (the catalog
        # applies the same PaymentRefunded on its own time).
        deadline = time.monotonic() + 30
        for _ in range(120):
            stock = (await customer.product(product["id"]))["stock"]
            if stock == 4 or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.25)
        assert stock == 4
