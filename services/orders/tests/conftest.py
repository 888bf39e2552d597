"""Fixtures of the orders tests: tokens signed with the kit's dev keys, a fake catalog, the app."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from fastapi.testclient import TestClient
from sqlalchemy import Engine, create_engine, text

from contracts import Envelope, EventData, OrderLine, PaymentSucceeded, ProductChanged, new_envelope
from contracts.internal import ProductLookupRequest, ProductLookupResponse
from orders.app import create_app
from orders.settings import OrdersSettings
from shopkit.auth import SERVICE_TOKEN_HEADER
from shopkit.bus.rabbitmq import RabbitMQTransport
from shopkit.settings import DEV_INTERNAL_TOKEN, KitSettings
from shopkit.testing import mint_access_token

T = TypeVar("T")


def make_token(settings: KitSettings, user_id: uuid.UUID, role: str = "customer", *, ttl: int = 900) -> str:
    return mint_access_token(settings, role=role, user_id=user_id, expires_in=timedelta(seconds=ttl))


def auth_headers(settings: KitSettings, user_id: uuid.UUID, role: str = "customer") -> dict[str, str]:
    return {"Authorization": f"Bearer {make_token(settings, user_id, role)}"}


@dataclass
class FakeProduct:
    id: uuid.UUID
    sku: str
    name: str
    price: Decimal
    currency: str = "BDT"
    stock: int = 10
    is_active: bool = True
    version: int = 1

    def __setattr__(self, name: str, value: Any) -> None:
        super().__setattr__(name, value)
        # Like the real catalog: every change of a product once created is a new version, published.
        catalog = self.__dict__.get("_catalog")
        if catalog is not None and name != "version":
            super().__setattr__("version", self.version + 1)
            catalog.changed(self)

    def as_event(self) -> ProductChanged:
        return ProductChanged(
            product_id=self.id,
            sku=self.sku,
            name=self.name,
            price=self.price,
            currency=self.currency,
            is_active=self.is_active,
            stock=self.stock,
            version=self.version,
        )


@dataclass
class FakeCatalog:
    """Answers the catalog's internal lookup (contracts.internal) from a dict, and only to a caller
    with the service credential; counts the calls so tests see round trips. A product changed after
    it was added is published as ProductChanged to whoever subscribed (the app's dispatcher)."""

    products: dict[uuid.UUID, FakeProduct] = field(default_factory=dict)
    calls: list[list[str]] = field(default_factory=list)
    delay: float = 0.0
    token: str = DEV_INTERNAL_TOKEN
    subscribers: list[Callable[[ProductChanged], None]] = field(default_factory=list)

    def add(self, price: str, *, stock: int = 10, currency: str = "BDT", active: bool = True) -> uuid.UUID:
        """A product created a moment ago: orders has not heard of it yet."""
        product_id = uuid.uuid4()
        n = len(self.products) + 1
        product = FakeProduct(product_id, f"SKU-{n}", f"Product {n}", Decimal(price), currency, stock, active)
        product.__dict__["_catalog"] = self
        self.products[product_id] = product
        return product_id

    def changed(self, product: FakeProduct) -> None:
        for subscriber in self.subscribers:
            subscriber(product.as_event())

    @property
    def app(self) -> FastAPI:
        app = FastAPI()

        @app.post("/internal/products/lookup")
        async def lookup(body: dict[str, Any], request: Request) -> Any:
            if request.headers.get(SERVICE_TOKEN_HEADER) != self.token:
                return JSONResponse({"detail": "service credential required"}, status_code=401)
            asked = ProductLookupRequest.model_validate(body)
            self.calls.append(body["ids"])
            if self.delay:
                await asyncio.sleep(self.delay)
            found = [self.products[i].as_event() for i in asked.ids if i in self.products]
            return ProductLookupResponse(products=found).model_dump(mode="json")

        return app


@pytest.fixture
def catalog() -> FakeCatalog:
    return FakeCatalog()


@pytest.fixture
def settings(pg_url: str, amqp_url: str, bus_namespace: str, tmp_path: Path) -> OrdersSettings:
    return OrdersSettings(
        database_url=pg_url,
        amqp_url=amqp_url,
        bus_namespace=bus_namespace,
        var_dir=tmp_path,
        log_json=False,
        # The jobs are driven by hand in the tests that need them.
        order_sweep_interval=3600,
    )


@pytest.fixture
def client(settings: OrdersSettings, catalog: FakeCatalog) -> Iterator[TestClient]:
    with TestClient(create_app(settings, catalog_app=catalog.app)) as test_client:
        dispatcher = test_client.app.state.runtime.dispatcher  # type: ignore[attr-defined]
        catalog.subscribers.append(
            lambda change: dispatcher.handle(new_envelope(change, producer="catalog", correlation_id=change.product_id))
        )
        yield test_client


@pytest.fixture
def admin_db(pg_url: str) -> Iterator[Engine]:
    """The test database as its owner, to look at what the service wrote (schema `orders`)."""
    engine = create_engine(pg_url.replace("postgresql://", "postgresql+psycopg2://", 1))
    yield engine
    engine.dispose()


def rows(engine: Engine, sql: str, **params: Any) -> list[Any]:
    with engine.connect() as connection:
        return list(connection.execute(text(sql), params).all())


def eventually(check: Callable[[], T], *, timeout: float = 15.0, interval: float = 0.05) -> T:
    """Poll until `check` returns something truthy (the saga is asynchronous)."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s (last: {result!r})")
        time.sleep(interval)


def envelope(data: EventData, *, producer: str = "test") -> Envelope:
    return new_envelope(data, producer=producer, correlation_id=getattr(data, "order_id", None))


def publish(settings: KitSettings, *envelopes: Envelope) -> None:
    """Put events on the test's exchange, as another service's relay would."""

    async def _publish() -> None:
        transport = RabbitMQTransport(settings.amqp_url or "", exchange=f"{settings.bus_namespace}shop.events")
        await transport.connect()
        try:
            failures = await transport.publish(list(envelopes))
            assert not failures, failures
        finally:
            await transport.close()

    asyncio.run(_publish())


# Test modules cannot import this file under --import-mode=importlib: the helpers travel as fixtures.


@pytest.fixture
def headers(settings: OrdersSettings) -> Callable[..., dict[str, str]]:
    def _headers(user_id: uuid.UUID, role: str = "customer") -> dict[str, str]:
        return auth_headers(settings, user_id, role)

    return _headers


@pytest.fixture
def db_rows(admin_db: Engine) -> Callable[..., list[Any]]:
    def _rows(sql: str, **params: Any) -> list[Any]:
        return rows(admin_db, sql, **params)

    return _rows


@pytest.fixture
def wait_for() -> Callable[..., Any]:
    return eventually


def payment_succeeded_for(order: dict[str, Any], payment_id: uuid.UUID | None = None) -> PaymentSucceeded:
    """The PaymentSucceeded payments would send for an order as the API answered it."""
    return PaymentSucceeded(
        payment_id=payment_id or uuid.uuid4(),
        order_id=order["id"],
        provider="stripe",
        amount=Decimal(order["total_amount"]),
        currency=order["currency"],
        items=[
            OrderLine(
                product_id=i["product_id"],
                sku=i["sku"],
                name=i["name"],
                unit_price=Decimal(i["unit_price"]),
                quantity=i["quantity"],
            )
            for i in order["items"]
        ],
    )


@pytest.fixture
def payment_succeeded() -> Callable[..., PaymentSucceeded]:
    return payment_succeeded_for


@pytest.fixture
def send(settings: OrdersSettings) -> Callable[..., None]:
    def _send(*events: EventData | Envelope) -> None:
        publish(settings, *(e if isinstance(e, Envelope) else envelope(e) for e in events))

    return _send
