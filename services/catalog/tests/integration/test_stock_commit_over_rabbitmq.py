"""The catalog as deployed: a PaymentSucceeded published on RabbitMQ reaches the running app, which
commits the stock and publishes StockCommitted back on the bus (outbox relay, broker confirms)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from catalog.app import create_app
from catalog.settings import CatalogSettings
from contracts import Envelope
from shopkit.bus.rabbitmq import RabbitMQTransport

pytestmark = pytest.mark.integration


async def test_payment_succeeded_on_the_bus_comes_back_as_stock_committed(
    pg_url: str,
    amqp_url: str,
    bus_namespace: str,
    tmp_path: Path,
    auth_headers: Callable[..., dict[str, str]],
    payment_succeeded: Callable[..., Envelope],
) -> None:
    settings = CatalogSettings(
        database_url=pg_url, amqp_url=amqp_url, bus_namespace=bus_namespace, var_dir=tmp_path, log_json=False
    )
    observer = RabbitMQTransport(amqp_url, exchange=f"{bus_namespace}shop.events")
    answers: asyncio.Queue[Envelope] = asyncio.Queue()

    async def collect(envelopes: Sequence[Envelope]) -> list[BaseException | None]:
        for envelope in envelopes:
            await answers.put(envelope)
        return [None] * len(envelopes)

    with TestClient(create_app(settings)) as client:
        admin = auth_headers(settings, "admin")
        created = client.post(
            "/api/products", json={"sku": "TEA-1", "name": "Tea", "price": "320.00", "stock": 4}, headers=admin
        )
        assert created.status_code == 201
        product_id = uuid.UUID(created.json()["id"])

        await observer.connect()
        try:
            await observer.subscribe(f"{bus_namespace}observer", ["StockCommitted", "StockRejected"], collect)
            payment = payment_succeeded({product_id: 3})
            assert await observer.publish([payment]) == {}

            answer = await asyncio.wait_for(answers.get(), timeout=20)
        finally:
            await observer.close()

        assert answer.type == "StockCommitted"
        assert answer.producer == "catalog"
        assert answer.causation_id == str(payment.id)
        assert answer.correlation_id == str(payment.data["order_id"])
        assert answer.data["order_id"] == payment.data["order_id"]
        assert answer.data["payment_id"] == payment.data["payment_id"]
        assert [line["quantity"] for line in answer.data["items"]] == [3]
        assert client.get(f"/api/products/{product_id}").json()["stock"] == 1


async def test_product_changes_reach_the_bus_with_the_product_as_correlation(
    pg_url: str,
    amqp_url: str,
    bus_namespace: str,
    tmp_path: Path,
    auth_headers: Callable[..., dict[str, str]],
    payment_succeeded: Callable[..., Envelope],
) -> None:
    settings = CatalogSettings(
        database_url=pg_url, amqp_url=amqp_url, bus_namespace=bus_namespace, var_dir=tmp_path, log_json=False
    )
    observer = RabbitMQTransport(amqp_url, exchange=f"{bus_namespace}shop.events")
    changes: asyncio.Queue[Envelope] = asyncio.Queue()

    async def collect(envelopes: Sequence[Envelope]) -> list[BaseException | None]:
        for envelope in envelopes:
            await changes.put(envelope)
        return [None] * len(envelopes)

    await observer.connect()
    try:
        await observer.subscribe(f"{bus_namespace}product-view", ["ProductChanged"], collect)
        with TestClient(create_app(settings)) as client:
            admin = auth_headers(settings, "admin")
            created = client.post(
                "/api/products",
                json={"sku": "DAL-1", "name": "Dal", "price": "140.00", "stock": 5, "category": "lentils"},
                headers=admin,
            )
            product_id = created.json()["id"]
            payment = payment_succeeded({uuid.UUID(product_id): 2})
            assert await observer.publish([payment]) == {}

            seen = [await asyncio.wait_for(changes.get(), timeout=20) for _ in range(2)]
    finally:
        await observer.close()

    seen.sort(key=lambda e: e.data["version"])
    assert [(e.data["version"], e.data["stock"]) for e in seen] == [(1, 5), (2, 3)]
    assert all(e.correlation_id == product_id and e.producer == "catalog" for e in seen)
    assert seen[0].data["category"] == "lentils"
    assert seen[1].causation_id == str(payment.id)
