"""Placement keeps working while the catalog is down: orders prices known products from its own view
of them (fed by ProductChanged), and answers a product it has never heard of with a clear 503 and
Retry-After, not a hang, whether the catalog process is gone or frozen."""

from __future__ import annotations

import asyncio
import signal
import time
import uuid

import pytest

from tools.shopclient import Customer, Http, register

from .conftest import Shop
from .helpers import admin_of

pytestmark = pytest.mark.e2e

# The catalog frozen, a read-through waits at most the upstream timeout (5 s by default).
NO_HANG = 15.0


async def place(customer: Customer, product_id: str, quantity: int = 1) -> tuple[int, dict, float]:
    body = {"items": [{"product_id": product_id, "quantity": quantity}]}
    started = time.monotonic()
    answer = await customer.call("POST", "/api/orders", json=body, key=str(uuid.uuid4()), retry=False)
    return answer.status, answer.headers, time.monotonic() - started


async def wait_until_known(customer: Customer, product_id: str) -> None:
    """The product has reached orders' view: a placement of it succeeds (read through or by event)."""
    deadline = time.monotonic() + 30
    while (status := (await place(customer, product_id))[0]) != 201:
        assert time.monotonic() < deadline, f"placement of a fresh product answers {status}"
        await asyncio.sleep(0.5)


async def test_orders_of_known_products_are_placed_while_the_catalog_is_down(shop: Shop) -> None:
    async with Http(retry_for=45) as http:
        admin = await admin_of(http, shop)
        known = await admin.create_product(price="42.00", stock=50)
        customer = await register(http, shop.gateway)
        await wait_until_known(customer, known["id"])
        # A change published while the catalog is up reaches the view before it goes down.
        edited = await admin.call("PATCH", f"/api/products/{known['id']}", json={"price": "40.00"})
        assert edited.status == 200, edited.body
        deadline = time.monotonic() + 30
        while True:
            order = await customer.place_order([(known["id"], 1)])
            if order["total_amount"] == "40.00":
                break
            assert time.monotonic() < deadline, "the price change never reached orders"
            await asyncio.sleep(0.5)

        for how, sig in (("killed", signal.SIGKILL), ("frozen", signal.SIGSTOP)):
            shop.cluster.kill("catalog", sig, hold=True)
            try:
                if sig == signal.SIGKILL:
                    await asyncio.to_thread(shop.cluster.wait_exit, "catalog", 15)
                results = await asyncio.gather(*(place(customer, known["id"]) for _ in range(5)))
                assert [status for status, _, _ in results] == [201] * 5, how

                status, headers, took = await place(customer, str(uuid.uuid4()))
                assert status == 503, how
                assert int(headers["Retry-After"]) >= 1, how
                assert took < NO_HANG, f"{how}: an unknown product took {took:.1f}s to be refused"
                again = await place(customer, str(uuid.uuid4()))
                assert again[0] == 503 and again[2] < NO_HANG, how
            finally:
                if sig == signal.SIGSTOP:
                    shop.cluster.kill("catalog", signal.SIGCONT, hold=True)
                await asyncio.to_thread(shop.cluster.restart, "catalog")
            await asyncio.to_thread(shop.cluster.wait_ready, 60, ["catalog"])

        # Back up: a product created now can be ordered at once again.
        fresh = await admin.create_product(price="7.00", stock=3)
        order = await customer.place_order([(fresh["id"], 2)])
        assert order["total_amount"] == "14.00"
