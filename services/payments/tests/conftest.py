"""Fixtures of the payments tests: tokens signed with the kit's dev keys, both provider sandboxes over
real HTTP, and the payments app served against real PostgreSQL and RabbitMQ."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select, text

from contracts import OrderLine, OrderPlaced, new_envelope
from payments.app import create_app
from payments.settings import PaymentsSettings
from sandbox.bkash_sandbox.app import create_app as create_bkash_sandbox
from sandbox.stripe_sandbox.app import create_app as create_stripe_sandbox
from sandbox.stripe_sandbox.settings import StripeSandboxSettings
from shopkit.settings import KitSettings
from shopkit.testing import ServerThread, free_port, local_http, mint_access_token


def make_token(settings: KitSettings, user_id: uuid.UUID, role: str = "customer") -> str:
    """An access token as the auth service issues it."""
    return mint_access_token(settings, role=role, user_id=user_id)


@dataclass
class Shop:
    """The payments service under test, the sandboxes it talks to and helpers to drive them."""

    app: FastAPI
    url: str
    stripe_url: str
    bkash_url: str
    settings: PaymentsSettings

    def token(self, user_id: uuid.UUID, role: str = "customer") -> str:
        return make_token(self.settings, user_id, role)

    def headers(self, user_id: uuid.UUID, role: str = "customer") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(user_id, role)}"}

    def place_order(
        self, user_id: uuid.UUID, *, currency: str = "BDT", lines: list[tuple[str, int]] | None = None
    ) -> uuid.UUID:
        """Deliver an OrderPlaced through the kit's dispatcher (inbox and all), as the bus would."""
        order_id = uuid.uuid4()
        items = [
            OrderLine(
                product_id=uuid.uuid4(), sku=f"SKU-{i}", name=f"Thing {i}", unit_price=Decimal(price), quantity=qty
            )
            for i, (price, qty) in enumerate(lines or [("625.00", 2)])
        ]
        total = sum((line.unit_price * line.quantity for line in items), Decimal("0"))
        event = OrderPlaced(order_id=order_id, user_id=user_id, currency=currency, total_amount=total, items=items)
        self.deliver(event)
        return order_id

    def deliver(self, data: Any, producer: str = "orders") -> None:
        envelope = new_envelope(data, producer=producer, correlation_id=getattr(data, "order_id", None))
        self.app.state.runtime.dispatcher.handle(envelope)

    def outbox(self, event_type: str | None = None) -> list[dict[str, Any]]:
        from shopkit.outbox import outbox

        query = select(outbox.c.envelope).order_by(outbox.c.created_at)
        if event_type:
            query = query.where(outbox.c.event_type == event_type)
        with self.app.state.runtime.db.engine.connect() as connection:
            return [row.envelope for row in connection.execute(query)]

    def rows(self, sql: str, **params: Any) -> list[Any]:
        with self.app.state.runtime.db.engine.connect() as connection:
            return list(connection.execute(text(sql), params))

    def pay_stripe(self, redirect_url: str, outcome: str = "success") -> httpx.Response:
        return local_http.post(f"{redirect_url}/pay", data={"outcome": outcome}, timeout=10)

    def pay_bkash(
        self,
        redirect_url: str,
        wallet: str = "01770618575",
        otp: str = "123456",
        pin: str = "12121",
        follow: bool = True,
    ) -> httpx.Response:
        """The customer's steps on bKash's page; follows the 303s back to our callback like a browser."""
        with httpx.Client(follow_redirects=follow, timeout=10) as browser:
            browser.post(f"{redirect_url}/wallet", data={"wallet": wallet})
            browser.post(f"{redirect_url}/otp", data={"otp": otp})
            return browser.post(f"{redirect_url}/pin", data={"pin": pin})

    def wait_for(self, predicate: Callable[[], Any], timeout: float = 10.0) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            time.sleep(0.05)
        raise AssertionError("condition not met in time")


@pytest.fixture
def sandbox_servers() -> Iterator[tuple[str, str, int]]:
    payments_port = free_port()
    stripe_settings = StripeSandboxSettings(
        webhook_url=f"http://127.0.0.1:{payments_port}/api/payments/webhooks/stripe",
        webhook_retry_delays=[0.2, 0.5],
    )
    with (
        ServerThread(create_stripe_sandbox(stripe_settings)) as stripe_server,
        ServerThread(create_bkash_sandbox()) as bkash_server,
    ):
        yield stripe_server.url, bkash_server.url, payments_port


def payments_settings(tmp_path: Path, stripe_url: str, bkash_url: str, **overrides: Any) -> PaymentsSettings:
    values: dict[str, Any] = {
        "var_dir": tmp_path,
        "sandbox_stripe_url": stripe_url,
        "sandbox_bkash_url": bkash_url,
        "bkash_timeout": 1.5,
        "sweep_interval": 0.3,
        "relay_poll_interval": 0.1,
        "log_json": False,
        **overrides,
    }
    return PaymentsSettings(**values)


@pytest.fixture
def shop(
    tmp_path: Path, pg_url: str, amqp_url: str, bus_namespace: str, sandbox_servers: tuple[str, str, int]
) -> Iterator[Shop]:
    stripe_url, bkash_url, payments_port = sandbox_servers
    settings = payments_settings(
        tmp_path,
        stripe_url,
        bkash_url,
        database_url=pg_url,
        amqp_url=amqp_url,
        bus_namespace=bus_namespace,
        public_url=f"http://127.0.0.1:{payments_port}",
    )
    app = create_app(settings)
    with ServerThread(app, port=payments_port) as server:
        yield Shop(app=app, url=server.url, stripe_url=stripe_url, bkash_url=bkash_url, settings=settings)
