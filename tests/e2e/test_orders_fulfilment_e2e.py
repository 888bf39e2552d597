"""Fulfilment through the gateway: a customer orders with a shipping address and pays on the Stripe
sandbox; an admin ships it with a tracking number and marks it delivered; the customer sees each
step. Shipping before payment or without an address is 409, and a customer may do neither (403)."""

from __future__ import annotations

import pytest

from tools.shopclient import Http, pay_on_stripe_page, register

from .conftest import Shop
from .helpers import admin_of

pytestmark = pytest.mark.e2e

ADDRESS = {
    "full_name": "Ayesha Siddiqua",
    "line1": "House 7, Road 11",
    "line2": "Banani",
    "city": "Dhaka",
    "postal_code": "1213",
    "country": "BD",
    "phone": "+8801770618575",
}
SHIPMENT = {"carrier": "Pathao Courier", "tracking_number": "PTH-2026-000123"}


async def test_an_order_is_shipped_and_delivered_and_the_customer_sees_each_step(shop: Shop) -> None:
    async with Http() as http:
        admin = await admin_of(http, shop)
        product = await admin.create_product(price="350.00", stock=5)
        customer = await register(http, shop.gateway)

        placed = await customer.call(
            "POST",
            "/api/orders",
            json={"items": [{"product_id": product["id"], "quantity": 2}], "shipping_address": ADDRESS},
        )
        assert placed.status == 201, placed.body
        order = placed.body
        assert order["shipping_address"] == ADDRESS and order["shipment"] is None

        early = await admin.call("POST", f"/api/orders/{order['id']}/ship", json=SHIPMENT)
        assert early.status == 409, early.body  # not paid yet

        payment = await customer.start_payment(order["id"], "stripe")
        assert (await pay_on_stripe_page(http, payment["redirect_url"])).status == 200
        confirmed = await customer.wait_order(order["id"], {"confirmed", "refunded", "cancelled"})
        assert confirmed["status"] == "confirmed", confirmed["timeline"]

        for path, body in ((f"/api/orders/{order['id']}/ship", SHIPMENT), (f"/api/orders/{order['id']}/deliver", None)):
            refused = await customer.call("POST", path, json=body)
            assert refused.status == 403, refused.body

        shipped = await admin.call("POST", f"/api/orders/{order['id']}/ship", json=SHIPMENT)
        assert shipped.status == 200, shipped.body
        seen = await customer.order(order["id"])
        assert seen["status"] == "shipped"
        assert {k: seen["shipment"][k] for k in SHIPMENT} == SHIPMENT
        assert seen["shipment"]["shipped_at"] and seen["shipment"]["delivered_at"] is None

        delivered = await admin.call("POST", f"/api/orders/{order['id']}/deliver")
        assert delivered.status == 200, delivered.body
        seen = await customer.order(order["id"])
        assert seen["status"] == "delivered"
        assert seen["shipment"]["delivered_at"] >= seen["shipment"]["shipped_at"]
        steps = [step["status"] for step in seen["timeline"]]
        assert steps == ["pending_payment", "paid", "confirmed", "shipped", "delivered"], seen["timeline"]
        assert seen["refunded_amount"] == "0.00"
        assert (await customer.product(product["id"]))["stock"] == 3


async def test_an_order_without_an_address_is_not_shipped(shop: Shop) -> None:
    async with Http() as http:
        admin = await admin_of(http, shop)
        product = await admin.create_product(price="20.00", stock=5)
        customer = await register(http, shop.gateway)
        order = await customer.place_order([(product["id"], 1)])
        assert order["shipping_address"] is None
        payment = await customer.start_payment(order["id"], "stripe")
        assert (await pay_on_stripe_page(http, payment["redirect_url"])).status == 200
        assert (await customer.wait_order(order["id"], {"confirmed", "refunded", "cancelled"}))["status"] == "confirmed"

        refused = await admin.call("POST", f"/api/orders/{order['id']}/ship", json=SHIPMENT)
        assert refused.status == 409, refused.body
        assert refused.headers["Content-Type"].startswith("application/problem+json")
        assert (await customer.order(order["id"]))["status"] == "confirmed"
