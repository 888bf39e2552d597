"""Stock commits per second through the catalog's handler path, next to plain SQL doing the same locking.

    .venv/bin/python services/catalog/bench_stock.py postgresql://postgres@127.0.0.1:5432/postgres

On a scratch database of the given server (provisioned and migrated like production, dropped at the end)
it drives PaymentSucceeded events through EventDispatcher.handle (inbox record, row lock, decrement,
ledger row, decision row, outbox row, commit) from 16 threads, on one hot product and spread over 1,000
products; then pgbench runs a transaction that locks one row FOR UPDATE, updates it and inserts an
outbox-like row, with 16 clients, on the same database. `run(admin_url)` returns the figures.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

import psycopg2
from psycopg2 import sql
from sqlalchemy import func, insert, select

from catalog.app import MIGRATIONS
from catalog.handlers import HANDLERS
from catalog.models import Product, StockMovement
from contracts import OrderLine, PaymentSucceeded, new_envelope
from shopkit.consumer import EventDispatcher
from shopkit.db import Database
from shopkit.migrate import upgrade
from shopkit.provision import provision
from shopkit.settings import KitSettings
from shopkit.testing import with_database
from shopkit.uow import unit_of_work

THREADS = 16
SERVICE_SECONDS = 6.0
PGBENCH_SECONDS = 10
SPREAD_PRODUCTS = 1000
STOCK_EACH = 10_000_000

PGBENCH_SCHEMA = """
CREATE TABLE bench_products (id int PRIMARY KEY, stock int NOT NULL CHECK (stock >= 0));
CREATE TABLE bench_outbox (id uuid PRIMARY KEY, payload jsonb NOT NULL, created_at timestamptz NOT NULL);
INSERT INTO bench_products SELECT g, {stock} FROM generate_series(1, {rows}) g;
"""
# The same shape of transaction as a stock commit, without the service: lock, update, outbox row.
PGBENCH_SCRIPT = """\\set pid random(1, {rows})
BEGIN;
SELECT stock FROM bench_products WHERE id = :pid FOR UPDATE;
UPDATE bench_products SET stock = stock - 1 WHERE id = :pid;
INSERT INTO bench_outbox (id, payload, created_at) VALUES (gen_random_uuid(), '{{"type": "StockCommitted"}}', now());
END;
"""


def run(admin_url: str) -> dict[str, Any]:
    name = f"shop_bench_stock_{uuid.uuid4().hex[:8]}"
    url = with_database(admin_url, name)
    provision(url, services=("catalog",))
    try:
        settings = KitSettings(database_url=url, db_pool_size=THREADS)
        db = Database(settings.service_database_url("catalog"), service="catalog", pool_size=THREADS)
        try:
            upgrade(db, MIGRATIONS)
            dispatcher = EventDispatcher(db, HANDLERS)
            hot = _seed(db, 1)
            spread = _seed(db, SPREAD_PRODUCTS)
            results: dict[str, Any] = {
                "service_hot_per_second": _drive(dispatcher, hot),
                "service_spread_per_second": _drive(dispatcher, spread),
            }
            results["ledger_consistent"] = _ledger_consistent(db)
        finally:
            db.dispose()
        results["pgbench_hot_per_second"] = _pgbench(url, rows=1)
        results["pgbench_spread_per_second"] = _pgbench(url, rows=SPREAD_PRODUCTS)
    finally:
        _drop(admin_url, name)
    for case in ("hot", "spread"):
        service, plain = results[f"service_{case}_per_second"], results[f"pgbench_{case}_per_second"]
        results[f"{case}_ratio"] = round(service / plain, 2) if service and plain else None
    results["threads"] = THREADS
    print(_table(results))
    return results


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


def _drive(dispatcher: EventDispatcher, products: list[uuid.UUID]) -> float:
    """Commits per second from THREADS threads, each handling one-line orders back to back."""
    done = [0] * THREADS
    errors: list[BaseException] = []
    start = threading.Barrier(THREADS + 1)
    stop_at = [0.0]

    def worker(slot: int) -> None:
        start.wait()
        counter = slot
        while time.perf_counter() < stop_at[0]:
            product_id = products[counter % len(products)]
            counter += THREADS
            order_id = uuid.uuid4()
            line = OrderLine(
                product_id=product_id, sku="BENCH", name="Bench product", unit_price=Decimal("10.00"), quantity=1
            )
            event = PaymentSucceeded(
                payment_id=uuid.uuid4(),
                order_id=order_id,
                provider="stripe",
                amount=Decimal("10.00"),
                currency="BDT",
                items=[line],
            )
            try:
                dispatcher.handle(new_envelope(event, producer="payments", correlation_id=order_id))
            except BaseException as exc:
                errors.append(exc)
                return
            done[slot] += 1

    threads = [threading.Thread(target=worker, args=(slot,)) for slot in range(THREADS)]
    for thread in threads:
        thread.start()
    began = time.perf_counter()
    stop_at[0] = began + SERVICE_SECONDS
    start.wait()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - began
    if errors:
        raise RuntimeError(f"the handler failed during the benchmark: {errors[0]!r}") from errors[0]
    return round(sum(done) / elapsed, 1)


def _ledger_consistent(db: Database) -> bool:
    with db.engine.connect() as connection:
        sums = dict(
            connection.execute(
                select(StockMovement.product_id, func.sum(StockMovement.delta)).group_by(StockMovement.product_id)
            ).all()
        )
        return all(sums.get(pid) == stock for pid, stock in connection.execute(select(Product.id, Product.stock)))


def _pgbench(url: str, *, rows: int) -> float | None:
    pgbench = shutil.which("pgbench")
    if pgbench is None:
        return None
    connection = psycopg2.connect(url)
    connection.autocommit = True
    with connection.cursor() as cursor:
        cursor.execute("DROP TABLE IF EXISTS bench_products, bench_outbox")
        cursor.execute(PGBENCH_SCHEMA.format(stock=STOCK_EACH, rows=rows))
    connection.close()
    parts = urlsplit(url)
    env = dict(os.environ)
    if parts.password:
        env["PGPASSWORD"] = parts.password
    with tempfile.NamedTemporaryFile("w", suffix=".sql", delete=False) as script:
        script.write(PGBENCH_SCRIPT.format(rows=rows))
    try:
        done = subprocess.run(
            [
                pgbench,
                "-n",
                "-c",
                str(THREADS),
                "-j",
                "2",
                "-T",
                str(PGBENCH_SECONDS),
                "-f",
                script.name,
                "-h",
                parts.hostname or "127.0.0.1",
                "-p",
                str(parts.port or 5432),
                "-U",
                parts.username or "postgres",
                parts.path.lstrip("/"),
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=PGBENCH_SECONDS + 60,
        )
    finally:
        os.unlink(script.name)
    tps = re.search(r"tps = ([\d.]+) \(without initial connection time\)", done.stdout)
    if done.returncode != 0 or tps is None:
        raise RuntimeError(f"pgbench failed: {(done.stderr or done.stdout).strip()[-500:]}")
    return round(float(tps.group(1)), 1)


def _drop(admin_url: str, name: str) -> None:
    connection = psycopg2.connect(with_database(admin_url, "postgres"))
    connection.autocommit = True
    with connection.cursor() as cursor:
        cursor.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
    connection.close()


def _table(results: dict[str, Any]) -> str:
    rows = [("stock commits/s", "service (handler)", "plain SQL (pgbench)", "ratio")]
    for case, label in (("hot", "one hot product"), ("spread", f"spread over {SPREAD_PRODUCTS}")):
        rows.append(
            (
                label,
                str(results[f"service_{case}_per_second"]),
                str(results[f"pgbench_{case}_per_second"]),
                str(results[f"{case}_ratio"]),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)) for row in rows)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: bench_stock.py <postgresql admin URL>")
    run(sys.argv[1])
