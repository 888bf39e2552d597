"""The shop's benchmark: the distributed mode on a fresh database, a bounded load through the gateway.

    python -m tools.bench [--duration 10] [--clients 32] [--checkout-clients 16] [--output bench-results.json]

Figures (one table on stdout, all of them in the JSON file):
- confirmed checkouts per second end to end (place order, pay on the Stripe sandbox page, webhook,
  stock committed, order confirmed) with p50/p95/p99 latency from placement to confirmed;
- order placements per second through the gateway at `--clients` concurrent clients, p50/p99;
- product listing requests per second through the gateway and directly on the catalog (their ratio is
  what the gateway costs);
- plain PostgreSQL in the same run (pgbench, custom scripts): (a) an order, its two lines and an outbox
  row in one transaction; (b) the saga's transactions (place, payment, stock commit, confirm);
- services/catalog/bench_stock.py's figures when that module exists;
- peak RSS of every process.

PostgreSQL comes from SHOP_BENCH_DATABASE_URL, else SHOP_TEST_DATABASE_URL, else the local default (a
server URL: a scratch database is created on it and dropped afterwards); RabbitMQ from SHOP_AMQP_URL,
else SHOP_TEST_AMQP_URL, else the local default.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import inspect
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg2
from psycopg2 import sql

from tools.shopclient import Customer, Http, login, pay_on_stripe_page, register
from tools.supervisor import REPO_ROOT, Cluster

DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/postgres"
DEFAULT_AMQP = "amqp://guest:guest@127.0.0.1:5672/"
ADMIN_EMAIL = "bench-admin@example.com"
ADMIN_PASSWORD = "bench-admin-password"
STOCK_BENCH = REPO_ROOT / "services" / "catalog" / "bench_stock.py"


# Statistics


def percentile(samples: list[float], q: float) -> float | None:
    if not samples:
        return None
    ordered = sorted(samples)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def summary(latencies: list[float], elapsed: float, errors: int) -> dict[str, Any]:
    ms = [value * 1000 for value in latencies]
    return {
        "count": len(ms),
        "errors": errors,
        "seconds": round(elapsed, 2),
        "per_second": round(len(ms) / elapsed, 1) if elapsed > 0 else 0.0,
        "p50_ms": _round(percentile(ms, 50)),
        "p95_ms": _round(percentile(ms, 95)),
        "p99_ms": _round(percentile(ms, 99)),
        "mean_ms": _round(statistics.fmean(ms) if ms else None),
    }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


async def closed_loop(
    clients: int, duration: float, operation: Callable[[int], Awaitable[float | None]]
) -> dict[str, Any]:
    """`clients` workers, each calling `operation` back to back for `duration` seconds. An operation
    answers its latency in seconds, or None for a failure."""
    latencies: list[float] = []
    errors = 0
    stop_at = time.monotonic() + duration

    async def worker(index: int) -> None:
        nonlocal errors
        while time.monotonic() < stop_at:
            try:
                latency = await operation(index)
            except Exception:
                latency = None
            if latency is None:
                errors += 1
            else:
                latencies.append(latency)

    started = time.monotonic()
    await asyncio.gather(*(worker(i) for i in range(clients)))
    return summary(latencies, time.monotonic() - started, errors)


def _instant(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


# The scenarios


class Scenarios:
    def __init__(self, http: Http, cluster: Cluster, admin: Customer, customers: list[Customer], products: list[str]):
        self.http = http
        self.cluster = cluster
        self.admin = admin
        self.customers = customers
        self.products = products

    def lines(self, index: int) -> list[tuple[str, int]]:
        first = self.products[index % len(self.products)]
        second = self.products[(index + 1) % len(self.products)]
        return [(first, 1), (second, 1)]

    async def place_order(self, index: int) -> float | None:
        customer = self.customers[index % len(self.customers)]
        body = {"items": [{"product_id": p, "quantity": q} for p, q in self.lines(index)]}
        started = time.perf_counter()
        answer = await customer.call("POST", "/api/orders", json=body, key=str(uuid.uuid4()), retry=False)
        return time.perf_counter() - started if answer.status == 201 else None

    async def checkout(self, index: int) -> float | None:
        """Placement to confirmed, as the shop recorded it (the order's own timeline), so that how often
        the customer looks does not decide the figure; the customer looks every 200 ms, which is what
        a waiting page would do, instead of adding a flood of reads to the load being measured."""
        customer = self.customers[index % len(self.customers)]
        order = await customer.place_order(self.lines(index))
        payment = await customer.start_payment(order["id"], "stripe")
        page = await pay_on_stripe_page(self.http, payment["redirect_url"])
        if page.status != 200:
            return None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            await asyncio.sleep(0.2)
            current = await customer.order(order["id"])
            if current["status"] == "confirmed":
                confirmed_at = next(t["at"] for t in current["timeline"] if t["status"] == "confirmed")
                return (_instant(confirmed_at) - _instant(current["created_at"])).total_seconds()
            if current["status"] in ("cancelled", "refunded"):
                return None
        return None

    def list_products(self, base: str) -> Callable[[int], Awaitable[float | None]]:
        async def operation(_index: int) -> float | None:
            started = time.perf_counter()
            answer = await self.http.request("GET", f"{base}/api/products?page_size=20", retry=False)
            return time.perf_counter() - started if answer.status == 200 else None

        return operation


async def prepare(cluster: Cluster, customers: int, products: int) -> Scenarios:
    http = Http(limit=500, retry_for=30)
    gateway = cluster.url("gateway")
    try:
        admin = await login(http, gateway, ADMIN_EMAIL, ADMIN_PASSWORD)
        product_ids = [
            (await admin.create_product(price=f"{100 + i}.00", stock=1_000_000, name=f"Bench product {i}"))["id"]
            for i in range(products)
        ]
        registered = await asyncio.gather(*(register(http, gateway) for _ in range(customers)))
    except BaseException:
        await http.close()
        raise
    return Scenarios(http, cluster, admin, list(registered), product_ids)


async def run_load(cluster: Cluster, args: argparse.Namespace) -> dict[str, Any]:
    scenarios = await prepare(cluster, max(args.clients, args.checkout_clients), products=20)
    try:
        results: dict[str, Any] = {}
        # Warm the connection pools and code paths so the first measured second is not a cold start.
        await closed_loop(4, 2, scenarios.place_order)
        results["order_placement"] = await closed_loop(args.clients, args.duration, scenarios.place_order)
        results["order_placement"]["clients"] = args.clients
        results["order_placement"]["client"] = "python (aiohttp)"
        if shutil.which("wrk"):
            # The same load from wrk, a client that costs the two shared cores far less than ours.
            results["order_placement_wrk"] = await asyncio.to_thread(
                wrk_order_placement, cluster.url("gateway"), scenarios, args.clients, args.duration
            )
        results["listing_gateway"] = await closed_loop(
            args.clients, args.duration, scenarios.list_products(cluster.url("gateway"))
        )
        results["listing_catalog_direct"] = await closed_loop(
            args.clients, args.duration, scenarios.list_products(cluster.url("catalog"))
        )
        direct = results["listing_catalog_direct"]["per_second"]
        results["gateway_cost_ratio"] = (
            round(direct / results["listing_gateway"]["per_second"], 2)
            if results["listing_gateway"]["per_second"]
            else None
        )
        results["checkout_end_to_end"] = await closed_loop(args.checkout_clients, args.duration, scenarios.checkout)
        results["checkout_end_to_end"]["clients"] = args.checkout_clients
        return results
    finally:
        await scenarios.http.close()


WRK_ORDERS = """
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


def wrk_order_placement(gateway: str, scenarios: Scenarios, clients: int, duration: float) -> dict[str, Any]:
    """POST /api/orders from wrk: `clients` connections, each order 2 lines, the customers in turn."""
    script = Path(os.environ.get("TMPDIR", "/tmp")) / f"shop-bench-orders-{uuid.uuid4().hex[:8]}.lua"
    script.write_text(
        WRK_ORDERS
        % {
            "tokens": ",".join(f'"{c.token}"' for c in scenarios.customers),
            "products": ",".join(f'"{p}"' for p in scenarios.products),
        }
    )
    try:
        done = subprocess.run(
            ["wrk", "-t2", f"-c{clients}", f"-d{int(duration)}s", "--latency", "-s", str(script), gateway],
            capture_output=True,
            text=True,
            timeout=duration + 60,
        )
    finally:
        script.unlink(missing_ok=True)
    return parse_wrk(done.stdout) | {"clients": clients, "client": "wrk"}


def parse_wrk(stdout: str) -> dict[str, Any]:
    def millis(label: str) -> float | None:
        found = re.search(rf"^\s*{label}\s+([\d.]+)(us|ms|s)\s*$", stdout, re.MULTILINE)
        if not found:
            return None
        value, unit = float(found.group(1)), found.group(2)
        return round(value / 1000 if unit == "us" else value * 1000 if unit == "s" else value, 1)

    rate = re.search(r"Requests/sec:\s+([\d.]+)", stdout)
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", stdout)
    errors = re.search(r"Socket errors:.*?(\d+).*?(\d+).*?(\d+).*?(\d+)", stdout)
    return {
        "per_second": float(rate.group(1)) if rate else None,
        "p50_ms": millis("50%"),
        "p99_ms": millis("99%"),
        "errors": (int(non_2xx.group(1)) if non_2xx else 0) + (sum(int(g) for g in errors.groups()) if errors else 0),
    }


# PostgreSQL alone (pgbench)

PGBENCH_SCRIPTS = Path(__file__).resolve().parent / "pgbench"


def run_pgbench(admin_url: str, clients: int, duration: int) -> dict[str, Any]:
    pgbench = shutil.which("pgbench")
    if not pgbench:
        return {"skipped": "pgbench is not installed (apt-get install -y postgresql-client)"}
    connection = psycopg2.connect(admin_url)
    connection.autocommit = True
    with connection.cursor() as cursor:
        cursor.execute((PGBENCH_SCRIPTS / "schema.sql").read_text())
    connection.close()
    parts = urlsplit(admin_url)
    env = dict(os.environ)
    if parts.password:
        env["PGPASSWORD"] = parts.password
    base = [
        pgbench,
        "-n",
        "-h",
        parts.hostname or "127.0.0.1",
        "-p",
        str(parts.port or 5432),
        "-U",
        parts.username or "postgres",
        "-c",
        str(clients),
        "-j",
        str(min(clients, os.cpu_count() or 2)),
        "-T",
        str(duration),
    ]
    results: dict[str, Any] = {}
    for name, script in (("place_order_tx", "place_order.sql"), ("saga_tx", "saga.sql")):
        done = subprocess.run(
            [*base, "-f", str(PGBENCH_SCRIPTS / script), parts.path.lstrip("/")],
            env=env,
            capture_output=True,
            text=True,
            timeout=duration + 60,
        )
        results[name] = parse_pgbench(done.stdout, done.stderr, done.returncode)
        results[name]["clients"] = clients
    return results


def parse_pgbench(stdout: str, stderr: str, returncode: int) -> dict[str, Any]:
    tps = re.search(r"tps = ([\d.]+) \(without initial connection time\)", stdout)
    latency = re.search(r"latency average = ([\d.]+) ms", stdout)
    failed = re.search(r"number of failed transactions: (\d+)", stdout)
    if returncode != 0 or not tps:
        return {"error": (stderr or stdout).strip()[-500:], "returncode": returncode}
    return {
        "per_second": round(float(tps.group(1)), 1),
        "latency_avg_ms": float(latency.group(1)) if latency else None,
        "failed": int(failed.group(1)) if failed else 0,
    }


# The catalog's own stock benchmark, when its engineer has written it


def run_stock_bench(admin_url: str) -> dict[str, Any] | None:
    if not STOCK_BENCH.exists():
        return None
    try:
        spec = importlib.util.spec_from_file_location("catalog_bench_stock", STOCK_BENCH)
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        outcome = module.run(admin_url)
        if inspect.isawaitable(outcome):
            outcome = asyncio.run(outcome)  # type: ignore[arg-type]
        return outcome if isinstance(outcome, dict) else {"result": outcome}
    except Exception as exc:  # its failure must not hide every other figure
        return {"error": f"{type(exc).__name__}: {exc}"}


# Infrastructure


@contextmanager
def scratch_database(server_url: str) -> Iterator[str]:
    from shopkit.testing import with_database

    name = f"shop_bench_{uuid.uuid4().hex[:8]}"
    admin_url = with_database(server_url, name)
    try:
        yield admin_url
    finally:
        connection = psycopg2.connect(with_database(server_url, "postgres"))
        connection.autocommit = True
        with connection.cursor() as cursor:
            cursor.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        connection.close()


def table(results: dict[str, Any]) -> str:
    rows: list[tuple[str, str, str]] = [("figure", "per second", "latency (ms)")]

    def lat(entry: dict[str, Any], *keys: str) -> str:
        return " ".join(f"{k.split('_')[0]}={entry.get(k)}" for k in keys)

    load = results.get("load", {})
    if "checkout_end_to_end" in load:
        e = load["checkout_end_to_end"]
        rows.append(
            (f"confirmed checkouts, {e['clients']} clients", str(e["per_second"]), lat(e, "p50_ms", "p95_ms", "p99_ms"))
        )
    for key in ("order_placement", "order_placement_wrk"):
        if key in load:
            e = load[key]
            rows.append(
                (
                    f"order placements, {e['clients']} clients ({e.get('client')})",
                    str(e["per_second"]),
                    lat(e, "p50_ms", "p99_ms") + f" errors={e.get('errors')}",
                )
            )
    place, plain = load.get("order_placement_wrk") or load.get("order_placement"), None
    entry = results.get("pgbench", {}).get("place_order_tx")
    if entry and place and entry.get("per_second") and place.get("per_second"):
        plain = entry["per_second"]
        rows.append(("order placements / plain PostgreSQL", f"{100 * place['per_second'] / plain:.1f} %", ""))
    for key, label in (
        ("listing_gateway", "product listing via gateway"),
        ("listing_catalog_direct", "product listing, catalog direct"),
    ):
        if key in load:
            rows.append((label, str(load[key]["per_second"]), lat(load[key], "p50_ms", "p99_ms")))
    if load.get("gateway_cost_ratio") is not None:
        rows.append(("direct / gateway listing ratio", str(load["gateway_cost_ratio"]), ""))
    for key, label in (("place_order_tx", "pgbench: order + 2 lines + outbox"), ("saga_tx", "pgbench: saga (4 tx)")):
        entry = results.get("pgbench", {}).get(key)
        if entry:
            rows.append(
                (
                    f"{label}, {entry.get('clients')} clients",
                    str(entry.get("per_second", entry.get("error"))),
                    f"avg={entry.get('latency_avg_ms')}",
                )
            )
    for name, mb in results.get("peak_rss_mb", {}).items():
        rows.append((f"peak RSS {name}", "", f"{mb} MB"))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per measured phase")
    parser.add_argument("--clients", type=int, default=32, help="concurrent clients for placements and listing")
    parser.add_argument("--checkout-clients", type=int, default=16, help="concurrent end-to-end checkouts")
    parser.add_argument("--pgbench-clients", type=int, default=32)
    parser.add_argument("--output", type=Path, default=REPO_ROOT / "bench-results.json")
    parser.add_argument("--log-dir", type=Path, default=REPO_ROOT / "var" / "log" / "bench")
    args = parser.parse_args(argv)

    server = os.environ.get("SHOP_BENCH_DATABASE_URL") or os.environ.get("SHOP_TEST_DATABASE_URL") or DEFAULT_PG
    amqp = os.environ.get("SHOP_AMQP_URL") or os.environ.get("SHOP_TEST_AMQP_URL") or DEFAULT_AMQP
    results: dict[str, Any] = {
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "settings": {k: v for k, v in vars(args).items() if k not in ("output", "log_dir")},
    }
    with scratch_database(server) as database_url:
        cluster = Cluster(
            database_url=database_url,
            amqp_url=amqp,
            log_dir=args.log_dir,
            env={
                "SHOP_BUS_NAMESPACE": f"bench{uuid.uuid4().hex[:6]}.",
                "SHOP_ADMIN_EMAIL": ADMIN_EMAIL,
                "SHOP_ADMIN_PASSWORD": ADMIN_PASSWORD,
                # The bench measures throughput; the per-user limits would measure themselves.
                "SHOP_RATE_LIMIT_ENABLED": "false",
                "SHOP_LOG_LEVEL": "WARNING",
            },
        )
        print(f"starting the shop (logs in {args.log_dir}) ...", file=sys.stderr, flush=True)
        cluster.start()
        try:
            cluster.wait_ready(90)
            print("measuring ...", file=sys.stderr, flush=True)
            results["load"] = asyncio.run(run_load(cluster, args))
            results["peak_rss_mb"] = cluster.peak_rss_mb()
            results["restarts"] = cluster.restarts()
        finally:
            cluster.stop()
        print("pgbench ...", file=sys.stderr, flush=True)
        results["pgbench"] = run_pgbench(database_url, args.pgbench_clients, max(5, int(args.duration)))
        stock = run_stock_bench(database_url)
        if stock is not None:
            results["catalog_stock_bench"] = stock
    args.output.write_text(json.dumps(results, indent=2, default=str) + "\n")
    print(table(results))
    if "catalog_stock_bench" in results:
        print("catalog stock bench:", json.dumps(results["catalog_stock_bench"], default=str))
    print(f"figures written to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
