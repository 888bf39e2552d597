"""One trace per checkout: a client's `traceparent` on `POST /api/orders` reaches every service the
saga runs through, including the Stripe webhook (which arrives with no trace of its own and is applied
in the payment's stored trace), the catalog's stock commit and OrderConfirmed.

In the all-in-one mode, in this process, the spans are recorded by an in-memory exporter; in the
distributed mode, each service's JSON log lines name the trace."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from shopkit import tracing
from shopkit.testing import ServerThread, free_port
from tools.shopclient import Customer, Http, expect, login, pay_on_stripe_page, register

from .conftest import ADMIN_EMAIL, ADMIN_PASSWORD, Shop
from .helpers import admin_of

pytestmark = pytest.mark.e2e

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CLIENT_SPAN = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE}-{CLIENT_SPAN}-01"
SAGA_SERVICES = {"gateway", "orders", "payments", "catalog"}
# Real provider keys would unmount the sandboxes the checkout pays on.
PROVIDER_VARIABLES = (
    "STRIPE_SECRET_KEY",
    "STRIPE_WEBHOOK_SECRET",
    "STRIPE_API_BASE",
    "BKASH_APP_KEY",
    "BKASH_BASE_URL",
)


async def checkout(http: Http, gateway: str, admin: Customer) -> dict[str, Any]:
    """One Stripe checkout whose order is placed with the client's traceparent; the payment is started
    and paid without one (its trace comes from the order). Returns the confirmed order."""
    product = await admin.create_product(price="10.00", stock=5)
    customer = await register(http, gateway)
    body = {"items": [{"product_id": product["id"], "quantity": 2}]}
    headers = {**customer.auth, "Idempotency-Key": str(uuid.uuid4()), "traceparent": TRACEPARENT}
    order = expect(await http.request("POST", f"{gateway}/api/orders", json=body, headers=headers), 201)
    payment = await customer.start_payment(order["id"], "stripe")
    page = await pay_on_stripe_page(http, payment["redirect_url"])
    assert page.status == 200, page.body
    confirmed = await customer.wait_order(order["id"], {"confirmed", "refunded", "cancelled"})
    assert confirmed["status"] == "confirmed", confirmed["timeline"]
    return dict(confirmed)


# --- all-in-one, spans in memory ----------------------------------------------------------------------


@contextmanager
def embedded_shop(var_dir: Path) -> Iterator[str]:
    """The all-in-one app served from a thread of this process, on SQLite and the in-process bus."""
    from allinone.app import create_app

    saved_env, root = dict(os.environ), logging.getLogger()
    saved_logging = (root.handlers[:], root.level)
    for name in [n for n in os.environ if n.startswith("SHOP_") or n in PROVIDER_VARIABLES]:
        del os.environ[name]
    os.environ.update(
        SHOP_VAR_DIR=str(var_dir),
        SHOP_ENVIRONMENT="test",
        SHOP_ADMIN_EMAIL=ADMIN_EMAIL,
        SHOP_ADMIN_PASSWORD=ADMIN_PASSWORD,
    )
    try:
        port = free_port()
        with ServerThread(create_app(port), port) as server:
            yield server.url
    finally:
        os.environ.clear()
        os.environ.update(saved_env)
        root.handlers[:], root.level = saved_logging


def trace_of(span: ReadableSpan) -> str:
    assert span.context is not None
    return format(span.context.trace_id, "032x")


def service_of(span: ReadableSpan) -> str:
    return str((span.attributes or {}).get("shop.service"))


async def test_one_checkout_is_one_trace_across_the_embedded_shop(tmp_path: Path) -> None:
    exporter = InMemorySpanExporter()
    tracing.record_spans(exporter)
    try:
        with embedded_shop(tmp_path / "var") as base:
            async with Http() as http:
                admin = await login(http, base, ADMIN_EMAIL, ADMIN_PASSWORD)
                await checkout(http, base, admin)
                # OrderConfirmed is published by the relay a moment after the commit that confirmed it.
                deadline = time.monotonic() + 30
                while not any(s.name == "publish OrderConfirmed" for s in exporter.get_finished_spans()):
                    assert time.monotonic() < deadline, "OrderConfirmed was never published"
                    await asyncio.sleep(0.1)
    finally:
        tracing.stop_recording()

    spans = exporter.get_finished_spans()
    traced = [s for s in spans if trace_of(s) == TRACE]
    assert {service_of(s) for s in traced} >= SAGA_SERVICES
    # The gateway's span is the client's child; the orders request span is the gateway's.
    [entry] = [s for s in traced if s.kind == tracing.SERVER and service_of(s) == "gateway"]
    assert entry.parent is not None and format(entry.parent.span_id, "016x") == CLIENT_SPAN
    assert (entry.attributes or {}).get("url.path") == "/api/orders"
    [placed] = [s for s in traced if s.kind == tracing.SERVER and service_of(s) == "orders"]
    assert placed.parent is not None and placed.parent.span_id == entry.context.span_id

    def names(service: str) -> set[str]:
        return {s.name for s in traced if service_of(s) == service}

    assert {"publish OrderPlaced", "publish OrderConfirmed"} <= names("orders")
    assert {"consume PaymentSucceeded", "consume StockCommitted"} <= names("orders")
    assert {"consume OrderPlaced", "apply stripe verdict", "publish PaymentSucceeded"} <= names("payments")
    assert {"consume PaymentSucceeded", "publish StockCommitted"} <= names("catalog")

    # The webhook came from the sandbox with no traceparent and is a trace of its own; the verdict it
    # carried was applied in the order's trace.
    webhooks = [s for s in spans if s.kind == tracing.SERVER and service_of(s) == "payments"]
    webhook = [s for s in webhooks if str((s.attributes or {}).get("url.path")).endswith("/webhooks/stripe")]
    assert webhook and all(trace_of(s) != TRACE for s in webhook)


# --- distributed, trace ids in the JSON logs ----------------------------------------------------------


def logged_trace_lines(log: Path) -> list[dict[str, Any]]:
    lines = []
    for text in log.read_text(errors="replace").splitlines():
        try:
            entry = json.loads(text)
        except ValueError:
            continue  # the supervisor's own banner lines
        if isinstance(entry, dict) and entry.get("trace_id") == TRACE:
            lines.append(entry)
    return lines


async def test_one_checkout_names_its_trace_in_every_services_json_logs(shop: Shop) -> None:
    async with Http() as http:
        await checkout(http, shop.gateway, await admin_of(http, shop))
    log_dir = shop.cluster.log_dir
    assert log_dir is not None
    expected = {
        "gateway": {"request"},
        "orders": {"order placed", "order paid", "order confirmed"},
        "payments": {"payment succeeded"},
        "catalog": {"stock committed"},
    }
    deadline = time.monotonic() + 30
    while True:
        found = {name: {e["msg"] for e in logged_trace_lines(log_dir / f"{name}.log")} for name in expected}
        if all(expected[name] <= found[name] for name in expected) or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.2)
    for name, messages in expected.items():
        assert messages <= found[name], f"{name} logged {sorted(found[name])} in the trace"
