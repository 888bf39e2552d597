"""ProductChanged: emitted through the outbox on every create, edit, archive and stock movement, with a
per-product version that only grows. Under concurrent changes on PostgreSQL no two events share a
version and no event carries a state older than its version."""

from __future__ import annotations

import itertools
import random
import threading
import uuid
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from catalog import service, stock
from catalog.app import create_app
from catalog.handlers import HANDLERS
from catalog.models import Product, StockMovement
from catalog.schemas import ProductUpdate, StockAdjustment
from catalog.settings import CatalogSettings
from contracts import Envelope, PaymentRefunded, ProductChanged, new_envelope
from shopkit.consumer import EventDispatcher
from shopkit.db import Database
from shopkit.outbox import outbox
from shopkit.uow import unit_of_work

pytestmark = pytest.mark.integration

Headers = dict[str, str]


def changes_of(db: Database, product_id: uuid.UUID | str) -> list[dict[str, Any]]:
    """The ProductChanged envelopes of one product, by version (each validated against the contract)."""
    with db.engine.connect() as connection:
        envelopes = [
            row.envelope
            for row in connection.execute(select(outbox.c.envelope).where(outbox.c.event_type == "ProductChanged"))
            if row.envelope["data"]["product_id"] == str(product_id)
        ]
    for envelope in envelopes:
        ProductChanged.model_validate(envelope["data"])
        assert envelope["correlation_id"] == str(product_id)
        assert envelope["producer"] == "catalog"
    return sorted(envelopes, key=lambda e: e["data"]["version"])


@pytest.fixture
def client(pg_settings: CatalogSettings) -> Iterator[TestClient]:
    with TestClient(create_app(pg_settings)) as test_client:
        yield test_client


def test_every_change_of_a_product_emits_its_facts_with_the_next_version(
    client: TestClient, pg_settings: CatalogSettings, auth_headers: Callable[..., Headers]
) -> None:
    admin = auth_headers(pg_settings, "admin")
    db: Database = client.app.state.runtime.db  # type: ignore[attr-defined]
    created = client.post(
        "/api/products",
        json={
            "sku": "TEA-GREEN-1",
            "name": "Green Tea",
            "price": "250.00",
            "stock": 8,
            "category": "tea",
            "images": ["https://cdn.example.com/tea.jpg"],
        },
        headers=admin,
    ).json()
    pid = created["id"]
    steps: list[tuple[str, str, dict[str, Any] | None]] = [
        ("PATCH", f"/api/products/{pid}", {"price": "275.50", "images": []}),
        ("PATCH", f"/api/products/{pid}", {"price": "275.50"}),  # no change: no version, no event
        ("DELETE", f"/api/products/{pid}", None),
        ("DELETE", f"/api/products/{pid}", None),  # archived already
        ("PATCH", f"/api/products/{pid}", {"is_active": True, "category": None}),
        ("POST", f"/api/products/{pid}/stock-adjustments", {"delta": -3, "reason": "damaged"}),
        ("POST", f"/api/products/{pid}/stock-adjustments", {"delta": -30, "reason": "refused: below zero"}),
    ]
    for method, path, body in steps:
        assert client.request(method, path, json=body, headers=admin).status_code < 500

    facts = [
        (
            e["data"]["version"],
            e["data"]["price"],
            e["data"]["is_active"],
            e["data"]["stock"],
            e["data"]["category"],
            e["data"]["images"],
        )
        for e in changes_of(db, pid)
    ]
    assert facts == [
        (1, "250.00", True, 8, "tea", ["https://cdn.example.com/tea.jpg"]),
        (2, "275.50", True, 8, "tea", []),
        (3, "275.50", False, 8, "tea", []),
        (4, "275.50", True, 8, None, []),
        (5, "275.50", True, 5, None, []),
    ]
    assert all(e["data"]["sku"] == "TEA-GREEN-1" and e["data"]["currency"] == "BDT" for e in changes_of(db, pid))


def test_order_commits_and_releases_emit_the_stock_they_leave(
    pg_db: Database,
    pg_dispatcher: EventDispatcher,
    seed_product: Callable[..., uuid.UUID],
    payment_succeeded: Callable[..., Envelope],
) -> None:
    product = seed_product(pg_db, stock=5)
    payment = payment_succeeded({product: 2})
    pg_dispatcher.handle(payment)
    refund = PaymentRefunded(
        payment_id=payment.data["payment_id"],
        order_id=payment.data["order_id"],
        provider="stripe",
        amount=Decimal(payment.data["amount"]),
        currency="BDT",
        reason="customer changed their mind",
    )
    refunded = new_envelope(refund, producer="payments", correlation_id=payment.data["order_id"])
    pg_dispatcher.handle(refunded)
    pg_dispatcher.handle(new_envelope(refund, producer="payments", correlation_id=payment.data["order_id"]))

    changes = changes_of(pg_db, product)
    assert [(e["data"]["version"], e["data"]["stock"]) for e in changes] == [(2, 3), (3, 5)]
    # Each is caused by the event that moved the stock.
    assert [e["causation_id"] for e in changes] == [str(payment.id), str(refunded.id)]


def test_concurrent_adjustments_never_share_a_version_nor_carry_a_stale_stock(
    pg_db: Database, seed_product: Callable[..., uuid.UUID]
) -> None:
    product = seed_product(pg_db, stock=1000)
    # Distinct sizes: the difference between two consecutive versions names the one adjustment between.
    deltas = [size if size % 3 else -size for size in range(1, 41)]
    start = threading.Barrier(len(deltas))
    errors: list[BaseException] = []

    def adjust(delta: int) -> None:
        start.wait()
        try:
            with unit_of_work(pg_db) as uow:
                stock.adjust_stock(uow, product, StockAdjustment(delta=delta, reason=f"count {delta}"))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=adjust, args=(delta,)) for delta in deltas]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []

    changes = [e["data"] for e in changes_of(pg_db, product)]
    assert [c["version"] for c in changes] == list(range(2, len(deltas) + 2))
    stocks = [1000] + [c["stock"] for c in changes]
    steps = [after - before for before, after in itertools.pairwise(stocks)]
    assert sorted(steps) == sorted(deltas)  # every adjustment exactly once, each on the state before it
    with pg_db.engine.connect() as connection:
        row = connection.execute(select(Product.stock, Product.version).where(Product.id == product)).one()
        ledger_after = set(
            connection.execute(select(StockMovement.stock_after).where(StockMovement.product_id == product)).scalars()
        )
    assert (row.stock, row.version) == (changes[-1]["stock"], changes[-1]["version"]) == (1000 + sum(deltas), 41)
    assert {c["stock"] for c in changes} <= ledger_after


def test_edits_adjustments_and_commit_batches_racing_keep_one_version_per_change(
    pg_db: Database,
    seed_product: Callable[..., uuid.UUID],
    payment_succeeded: Callable[..., Envelope],
) -> None:
    dispatcher = EventDispatcher(pg_db, HANDLERS)
    products = [seed_product(pg_db, stock=500) for _ in range(2)]
    rng = random.Random(11)
    start = threading.Barrier(3)
    errors: list[BaseException] = []

    def run(work: Callable[[], None]) -> Callable[[], None]:
        def loop() -> None:
            start.wait()
            try:
                for _ in range(15):
                    work()
            except BaseException as exc:
                errors.append(exc)

        return loop

    def edit() -> None:
        with unit_of_work(pg_db) as uow:
            price = Decimal(rng.randint(100, 999)) / 10
            service.update_product(uow, rng.choice(products), ProductUpdate(price=price))

    def adjust() -> None:
        with unit_of_work(pg_db) as uow:
            stock.adjust_stock(uow, rng.choice(products), StockAdjustment(delta=rng.randint(1, 5), reason="delivery"))

    def commit_batch() -> None:
        batch = [payment_succeeded({pid: 1 for pid in rng.sample(products, rng.randint(1, 2))}) for _ in range(4)]
        outcomes = dispatcher.handle_batch(batch)
        if any(outcomes):
            raise AssertionError(outcomes)

    threads = [threading.Thread(target=run(work)) for work in (edit, adjust, commit_batch)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []

    with pg_db.engine.connect() as connection:
        for product in products:
            row = connection.execute(
                select(Product.stock, Product.version, Product.price).where(Product.id == product)
            ).one()
            ledger_after = set(
                connection.execute(
                    select(StockMovement.stock_after).where(StockMovement.product_id == product)
                ).scalars()
            )
            changes = [e["data"] for e in changes_of(pg_db, product)]
            # One event per change, each with its own version: no gap, no repeat.
            assert [c["version"] for c in changes] == list(range(2, row.version + 1))
            last = changes[-1]
            assert (last["stock"], Decimal(last["price"])) == (row.stock, row.price)
            # Every stock an event reports is one the ledger reached.
            assert {c["stock"] for c in changes} <= ledger_after
