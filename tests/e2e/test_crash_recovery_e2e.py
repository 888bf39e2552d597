"""While customers keep checking out, the catalog, orders and payments processes are killed with -9 in
turn and RabbitMQ is restarted once. Afterwards every order ends in a terminal state, nobody is charged
twice, no stock is decremented twice, and units sold + units left = units received."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import time
from collections import Counter
from typing import Any
from urllib.parse import urlsplit

import pytest

from tools.shopclient import (
    Customer,
    Http,
    ShopError,
    pay_on_stripe_page,
    register,
)

from .conftest import Shop
from .helpers import admin_of, settle_and_verify

pytestmark = [pytest.mark.e2e, pytest.mark.serial]

SHOPPERS = 6
STOCK = 1000
SETTLE_TIMEOUT = 150.0


def broker_is_local(amqp_url: str) -> bool:
    return urlsplit(amqp_url).hostname in ("127.0.0.1", "localhost") and shutil.which("rabbitmqctl") is not None


def restart_broker_app() -> None:
    """stop_app/start_app keeps the node and its durable queues, unlike a full restart."""
    subprocess.run(["rabbitmqctl", "stop_app"], check=True, capture_output=True, timeout=60)
    try:
        time.sleep(2)
    finally:
        subprocess.run(["rabbitmqctl", "start_app"], check=True, capture_output=True, timeout=120)


def ensure_broker_running() -> None:
    subprocess.run(["rabbitmqctl", "start_app"], capture_output=True, timeout=120)


class Stream:
    """Customers checking out in a loop (two products per order, paid with Stripe)."""

    def __init__(self, http: Http, customers: list[Customer], products: list[str]) -> None:
        self.http = http
        self.customers = customers
        self.products = products
        self.stop = asyncio.Event()
        self.orders: dict[str, Customer] = {}
        self.paid: set[str] = set()
        self.errors: Counter[str] = Counter()

    async def shopper(self, customer: Customer) -> None:
        while not self.stop.is_set():
            try:
                order = await customer.place_order([(self.products[0], 1), (self.products[1], 2)])
            except (TimeoutError, ShopError, OSError) as exc:
                self.errors[f"place: {type(exc).__name__}"] += 1
                continue
            self.orders[order["id"]] = customer
            try:
                payment = await customer.start_payment(order["id"], "stripe")
                redirect_url = payment["redirect_url"] or await self.redirect_url_of(customer, payment["id"])
                if not redirect_url:
                    self.errors["payment without redirect_url"] += 1
                    continue
                page = await pay_on_stripe_page(self.http, redirect_url)
                if page.status == 200:
                    self.paid.add(order["id"])
                    continue
                self.errors[f"pay page {page.status}"] += 1
            except (TimeoutError, ShopError, OSError) as exc:
                self.errors[f"pay: {type(exc).__name__}"] += 1

    async def redirect_url_of(self, customer: Customer, payment_id: str) -> str | None:
        """A payment whose provider session was being created when payments died may get its URL
        a moment later (or never: then the customer gives up on it)."""
        for _ in range(20):
            await asyncio.sleep(0.5)
            payment = await customer.payment(payment_id)
            if payment["redirect_url"] or payment["status"] != "initiated":
                return payment["redirect_url"]
        return None

    async def run(self) -> list[Any]:
        return await asyncio.gather(*(self.shopper(c) for c in self.customers))


async def abandon_unpaid(stream: Stream) -> None:
    """What a customer does with an order they could not pay: cancel it (and any order a lost
    response hid from them, found in their own order list)."""
    for customer in stream.customers:
        listed = await customer.call("GET", "/api/orders?page_size=100")
        for order in listed.body["items"]:
            stream.orders.setdefault(order["id"], customer)
    for order_id, customer in stream.orders.items():
        if order_id in stream.paid:
            continue
        answer = await customer.cancel_order(order_id)
        assert answer.status in (200, 409), answer.body


async def test_kill_services_and_restart_broker_during_checkouts(shop: Shop) -> None:
    restart_broker = broker_is_local(shop.amqp_url) and os.environ.get("SHOP_E2E_BROKER_RESTART", "1") != "0"
    async with Http(retry_for=45) as http:
        admin = await admin_of(http, shop)
        products = [(await admin.create_product(price="10.00", stock=STOCK))["id"] for _ in range(2)]
        customers = list(await asyncio.gather(*(register(http, shop.gateway) for _ in range(SHOPPERS))))
        stream = Stream(http, customers, products)
        running = asyncio.create_task(stream.run())
        broker_stopped = False
        try:
            await asyncio.sleep(3)
            for name in ("catalog", "orders", "payments"):
                shop.cluster.kill(name, signal.SIGKILL)
                await asyncio.sleep(1)
                await asyncio.to_thread(shop.cluster.wait_ready, 60, [name])
                await asyncio.sleep(2)
            if restart_broker:
                broker_stopped = True
                await asyncio.to_thread(restart_broker_app)
                broker_stopped = False
                await asyncio.to_thread(shop.cluster.wait_ready, 60)
            await asyncio.sleep(3)
        finally:
            if broker_stopped:
                ensure_broker_running()
            stream.stop.set()
            await running

        print(f"stream: {len(stream.orders)} orders, {len(stream.paid)} paid, trouble {dict(stream.errors)}")
        assert sum(shop.cluster.restarts()[n] for n in ("catalog", "orders", "payments")) >= 3
        assert len(stream.paid) >= 10, f"too few checkouts got through: {len(stream.paid)}; {stream.errors}"
        await abandon_unpaid(stream)

        finals = await settle_and_verify(http, stream.orders, admin, products, shop.stripe, within=SETTLE_TIMEOUT)
        assert sum(1 for o in finals.values() if o["status"] == "confirmed") >= 10
