"""CPU time the orders process spends per order placement (not a test; run by hand).

    .venv/bin/python services/orders/tests/perf/cpu_per_placement.py [--seconds 20] [--clients 32]

Starts the catalog and orders processes (tools.supervisor.Cluster) on a fresh PostgreSQL database and
the local RabbitMQ, creates products, then drives `POST /api/orders` straight at orders with wrk
(two lines per order, as the benchmark does) and reads the orders (and catalog) processes' user+system CPU
from /proc before and after. CPU per placement, unlike orders per second, hardly depends on what else the
shared machine is doing. The products reach the orders' product view as the catalog publishes them
(ProductChanged) or, failing that, by the first placement's read-through."""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg2

from shopkit import testing
from shopkit.settings import KitSettings
from tools.shopclient import Customer, Http
from tools.supervisor import Cluster, free_base_port

WRK_SCRIPT = """
tokens = {%(tokens)s}
products = {%(products)s}
counter = 0
request = function()
  counter = counter + 1
  local a = products[(counter %% #products) + 1]
  local b = products[((counter + 1) %% #products) + 1]
  local body = '{"items": [{"product_id": "' .. a .. '", "quantity": 1}, {"product_id": "' .. b .. '", "quantity": 1}]}'
  return wrk.format("POST", "/api/orders", {["Content-Type"] = "application/json",
    ["Authorization"] = "Bearer " .. tokens[(counter %% #tokens) + 1]}, body)
end
"""


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_wrk(url: str, script: str, clients: int, seconds: int) -> tuple[int, str]:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as handle:
        handle.write(script)
    try:
        done = subprocess.run(
            ["wrk", "-t2", f"-c{clients}", f"-d{seconds}s", "--latency", "-s", handle.name, url],
            capture_output=True,
            text=True,
            timeout=seconds + 60,
        )
    finally:
        os.unlink(handle.name)
    found = re.search(r"(\d+) requests in", done.stdout)
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", done.stdout)
    requests = int(found.group(1)) if found else 0
    return requests - (int(non_2xx.group(1)) if non_2xx else 0), done.stdout


async def prepare(cluster: Cluster, settings: KitSettings, products: int) -> list[dict[str, Any]]:
    token = testing.mint_access_token(settings, role="admin", expires_in=timedelta(hours=1))
    async with Http(retry_for=30) as http:
        admin = Customer(http, cluster.url("catalog"), "admin@example.com", token)
        return [await admin.create_product(price=f"{100 + i}.00", stock=1_000_000) for i in range(products)]


def seed_view(database_url: str, products: list[dict[str, Any]]) -> None:
    """Put the products into orders' product view as their ProductChanged would (for a catalog that
    does not publish it yet)."""
    connection = psycopg2.connect(database_url)
    with connection, connection.cursor() as cursor:
        for p in products:
            cursor.execute(
                "INSERT INTO orders.products (product_id, sku, name, price, currency, is_active, stock, version,"
                " updated_at) VALUES (%s, %s, %s, %s, %s, %s, %s, 1, now()) ON CONFLICT DO NOTHING",
                (p["id"], p["sku"], p["name"], p["price"], p["currency"], p["is_active"], p["stock"]),
            )
    connection.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--products", type=int, default=20)
    parser.add_argument("--seed-view", action="store_true", help="write the products into orders' view")
    parser.add_argument("--py-spy", metavar="FILE", help="also sample orders with py-spy (raw folded stacks)")
    args = parser.parse_args()
    log_dir = Path(tempfile.mkdtemp(prefix="orders-cpu-"))
    var_dir = log_dir / "var"
    env = {
        "SHOP_BUS_NAMESPACE": f"cpu{uuid.uuid4().hex[:8]}.",
        "SHOP_VAR_DIR": str(var_dir),
        "SHOP_ENVIRONMENT": "test",
        "SHOP_LOG_LEVEL": "WARNING",
    }
    settings = KitSettings(var_dir=var_dir)
    with testing.fresh_database() as database_url:
        cluster = Cluster(
            database_url=database_url,
            amqp_url=testing.amqp_url(),
            base_port=free_base_port(),
            log_dir=log_dir,
            env=env,
            only=["catalog", "orders"],
            restart_on_death=False,
        )
        with cluster:
            cluster.wait_ready(120)
            created = asyncio.run(prepare(cluster, settings, args.products))
            if args.seed_view:
                seed_view(database_url, created)
            products = [p["id"] for p in created]
            tokens = [testing.mint_access_token(settings, expires_in=timedelta(hours=1)) for _ in range(50)]
            script = WRK_SCRIPT % {
                "tokens": ",".join(f'"{t}"' for t in tokens),
                "products": ",".join(f'"{p}"' for p in products),
            }
            orders_url = cluster.url("orders")
            time.sleep(2)  # let ProductChanged reach the view, where the catalog publishes it
            run_wrk(orders_url, script, 4, 3)  # warm-up: pools, caches, read-through
            pid, catalog_pid = cluster.pids()["orders"], cluster.pids()["catalog"]
            assert pid is not None and catalog_pid is not None
            spy = None
            if args.py_spy:
                py_spy = str(Path(sys.executable).parent / "py-spy")
                spy = subprocess.Popen(
                    # --gil: the thread holding the GIL, i.e. where the process's Python CPU goes
                    [
                        py_spy,
                        "record",
                        "--gil",
                        "-p",
                        str(pid),
                        "-o",
                        args.py_spy,
                        "-f",
                        "raw",
                        "-d",
                        str(args.seconds),
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            before, catalog_before = cpu_seconds(pid), cpu_seconds(catalog_pid)
            placed, output = run_wrk(orders_url, script, args.clients, args.seconds)
            used, catalog_used = cpu_seconds(pid) - before, cpu_seconds(catalog_pid) - catalog_before
            if spy is not None:
                spy.wait(timeout=60)
    print(output)
    per = 1000 / max(placed, 1)
    print(f"placements: {placed}, orders CPU: {used:.2f} s, per placement: {used * per:.3f} ms")
    print(f"catalog CPU meanwhile: {catalog_used:.2f} s, per placement: {catalog_used * per:.3f} ms")
    print(f"logs: {log_dir}")


if __name__ == "__main__":
    main()
