"""Stock commits per second through the catalog's handler, beside plain SQL doing the same locking.

On a scratch database (provisioned and migrated like production, dropped at the end) PaymentSucceeded
events go through the catalog's EventDispatcher.handle_batch the way its consumer hands them over (its
workers, each with a batch of what the broker delivered: inbox records, the product rows locked once
per batch in id order, decrements, ledger rows, decision rows, outbox rows, one commit), on one hot
product and spread over 1,000 products; then pgbench runs sql/stock_commit.sql (lock one row FOR
UPDATE, update it, insert an outbox row) with 16 clients on the same database. The ratios service /
plain SQL are the figures that matter.
"""

from __future__ import annotations

import threading
import time
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import func, insert, select

from catalog.app import MIGRATIONS
from catalog.handlers import HANDLERS
from catalog.models import Product, StockMovement
from contracts import Envelope, OrderLine, PaymentSucceeded, new_envelope
from shopkit.consumer import EventDispatcher
from shopkit.db import Database
from shopkit.migrate import upgrade
from shopkit.provision import provision
from shopkit.settings import KitSettings
from shopkit.uow import unit_of_work
from tools.bench.infra import scratch_database
from tools.bench.pgbench import SQL, PgbenchError, execute, pgbench

THREADS = 16
SPREAD_PRODUCTS = 1000
STOCK_EACH = 10_000_000


def run(server: str, *, seconds: float = 6.0, pgbench_seconds: float = 10.0) -> dict[str, Any]:
    with scratch_database(server, "shop_bench_stock") as url:
        provision(url, services=("catalog",))
        results = _through_the_handler(url, seconds)
        for case, rows in (("hot", 1), ("spread", SPREAD_PRODUCTS)):
            results[f"pgbench_{case}_per_second"] = _plain_sql(url, rows, pgbench_seconds)
    for case in ("hot", "spread"):
        service, plain = results[f"service_{case}_per_second"], results[f"pgbench_{case}_per_second"]
        results[f"{case}_ratio"] = round(service / plain, 2) if service and plain else None
    results["threads"] = THREADS
    return results


def _through_the_handler(url: str, seconds: float) -> dict[str, Any]:
    settings = KitSettings(database_url=url, db_pool_size=THREADS)
    db = Database(settings.service_database_url("catalog"), service="catalog", pool_size=THREADS)
    try:
        upgrade(db, MIGRATIONS)
        dispatcher = EventDispatcher(db, HANDLERS)
        hot = _seed(db, 1)
        spread = _seed(db, SPREAD_PRODUCTS)
        return {
            "service_hot_per_second": _drive(dispatcher, hot, seconds),
            "service_spread_per_second": _drive(dispatcher, spread, seconds),
            "ledger_consistent": _ledger_consistent(db),
        }
    finally:
        db.dispose()


def _plain_sql(url: str, rows: int, seconds: float) -> float | None:
    execute(url, (SQL / "stock_schema.sql").read_text(), {"stock": STOCK_EACH, "rows": rows})
    try:
        return float(
            pgbench(url, SQL / "stock_commit.sql", clients=THREADS, duration=seconds, variables={"rows": rows})[
                "per_second"
            ]
        )
    except PgbenchError:
        return None


def _seed(db: Database, count: int) -> list[uuid.UUID]:
    now = datetime.now(UTC)
    ids = [uuid.uuid4() for _ in range(count)]
    with unit_of_work(db) as uow:
        uow.session.execute(
            insert(Product),
            [
                {
                    "id": pid,
                    "sku": f"BENCH-{pid.hex[:12]}",
                    "name": "Bench product",
                    "description": "",
                    "price": Decimal("10.00"),
                    "currency": "BDT",
                    "stock": STOCK_EACH,
                    "is_active": True,
                    "created_at": now,
                    "updated_at": now,
                }
                for pid in ids
            ],
        )
        uow.session.execute(
            insert(StockMovement),
            [
                {
                    "id": uuid.uuid4(),
                    "product_id": pid,
                    "delta": STOCK_EACH,
                    "cause": "initial",
                    "order_id": None,
                    "reason": "bench",
                    "stock_after": STOCK_EACH,
                    "created_at": now,
                }
                for pid in ids
            ],
        )
        uow.commit()
    return ids


def _drive(dispatcher: EventDispatcher, products: list[uuid.UUID], seconds: float) -> float:
    """Commits per second as the catalog's consumer makes them: its workers (SHOP_CONSUMER_WORKERS)
    each hand the dispatcher a batch of what the broker delivered (up to SHOP_CONSUMER_BATCH_SIZE
    one-line orders), back to back."""
    settings = KitSettings()
    workers, batch = settings.consumer_workers, settings.consumer_batch_size
    done = [0] * workers
    errors: list[BaseException] = []
    start = threading.Barrier(workers + 1)
    stop_at = [0.0]

    def worker(slot: int) -> None:
        start.wait()
        counter = slot
        while time.perf_counter() < stop_at[0]:
            envelopes = []
            for _ in range(batch):
                envelopes.append(_payment_succeeded(products[counter % len(products)]))
                counter += workers
            try:
                failures = [outcome for outcome in dispatcher.handle_batch(envelopes) if outcome is not None]
            except BaseException as exc:
                errors.append(exc)
                return
            if failures:
                errors.append(failures[0])
                return
            done[slot] += len(envelopes)

    threads = [threading.Thread(target=worker, args=(slot,)) for slot in range(workers)]
    for thread in threads:
        thread.start()
    began = time.perf_counter()
    stop_at[0] = began + seconds
    start.wait()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - began
    if errors:
        raise RuntimeError(f"the handler failed during the benchmark: {errors[0]!r}") from errors[0]
    return round(sum(done) / elapsed, 1)


def _payment_succeeded(product_id: uuid.UUID) -> Envelope:
    order_id = uuid.uuid4()
    line = OrderLine(product_id=product_id, sku="BENCH", name="Bench product", unit_price=Decimal("10.00"), quantity=1)
    event = PaymentSucceeded(
        payment_id=uuid.uuid4(),
        order_id=order_id,
        provider="stripe",
        amount=Decimal("10.00"),
        currency="BDT",
        items=[line],
    )
    return new_envelope(event, producer="payments", correlation_id=order_id)


def _ledger_consistent(db: Database) -> bool:
    with db.engine.connect() as connection:
        sums = dict(
            connection.execute(
                select(StockMovement.product_id, func.sum(StockMovement.delta)).group_by(StockMovement.product_id)
            ).all()
        )
        return all(sums.get(pid) == stock for pid, stock in connection.execute(select(Product.id, Product.stock)))
