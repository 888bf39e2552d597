"""The shop's benchmark: the distributed mode on a scratch database, a bounded load through the gateway,
plain PostgreSQL (pgbench) in the same run as the bound of each figure.

    python -m tools.bench [--short] [--duration 20] [--clients 32] [--checkout-clients 32] ...

One table on stdout (figure, value, target, change against the previous run), every figure in
bench-results.json (the previous file is kept as bench-results.previous.json). See README "Benchmark".
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psutil

from tools.bench import drivers, report, stock
from tools.bench.cpu import CpuAccount, find_postmaster, find_rabbitmq, wait_quiet
from tools.bench.infra import ADMIN_EMAIL, ADMIN_PASSWORD, bench_cluster, scratch_database, server_url
from tools.bench.pgbench import shop_bounds
from tools.bench.scenario import Scenario, prepare
from tools.bench.stats import checkout_summary
from tools.supervisor import REPO_ROOT, Cluster

# What the processes spend doing nothing (timers, pollers) is measured apart for this long, so that a
# reader can tell it from the cost of the checkouts.
IDLE_SECONDS = 3.0
# name: (default, with --short)
DURATIONS: dict[str, tuple[float, float]] = {
    "duration": (20.0, 5.0),
    "listing_duration": (5.0, 2.0),
    "pgbench_duration": (10.0, 3.0),
    "stock_duration": (6.0, 2.0),
    "warmup": (3.0, 2.0),
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tools.bench", description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--short", action="store_true", help="short phases (a smoke run of about a minute)")
    parser.add_argument("--duration", type=float, help="seconds of placements and of checkouts (default 20)")
    parser.add_argument("--listing-duration", type=float, help="seconds per listing figure, 0 skips (default 5)")
    parser.add_argument("--pgbench-duration", type=float, help="seconds per pgbench bound (default 10)")
    parser.add_argument("--stock-duration", type=float, help="seconds per stock-commit figure (default 6)")
    parser.add_argument("--warmup", type=float, help="seconds of checkouts before measuring (default 3)")
    parser.add_argument("--clients", type=int, default=32, help="wrk connections placing orders")
    parser.add_argument("--checkout-clients", type=int, default=32, help="customers checking out in a closed loop")
    parser.add_argument("--pgbench-clients", type=int, default=32)
    parser.add_argument("--output", type=Path, default=REPO_ROOT / "bench-results.json")
    parser.add_argument("--previous", type=Path, help="the run to compare with (default: <output>.previous.json)")
    parser.add_argument("--log-dir", type=Path, default=REPO_ROOT / "var" / "log" / "bench")
    args = parser.parse_args(argv)
    for name, (normal, short) in DURATIONS.items():
        if getattr(args, name) is None:
            setattr(args, name, short if args.short else normal)
    if args.previous is None:
        args.previous = args.output.with_suffix(".previous.json")
    return args


def say(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


BENCH = "bench (python)"


def processes_of(cluster: Cluster) -> dict[str, psutil.Process]:
    named = {name: psutil.Process(pid) for name, pid in cluster.pids().items() if pid}
    rabbitmq = find_rabbitmq()
    if rabbitmq is not None:
        named["rabbitmq"] = rabbitmq
    named[BENCH] = psutil.Process(os.getpid())
    return named


def database_of(cluster: Cluster) -> str:
    return urlsplit(cluster.database_url or "").path.lstrip("/")


def shop_processes(cluster: Cluster) -> list[psutil.Process]:
    return [p for name, p in processes_of(cluster).items() if name in cluster.members]


def quiet(cluster: Cluster) -> None:
    """Let the previous phase's backlog (events, relays) finish before the next phase is measured."""
    say(f"waited {wait_quiet(shop_processes(cluster))} s for the shop to go quiet")


def checkouts(cluster: Cluster, scenario: Scenario, args: argparse.Namespace) -> dict[str, Any]:
    """The closed loop of confirmed checkouts, with the CPU every process spent on it."""
    shop = shop_processes(cluster)
    quiet(cluster)
    idle = CpuAccount(
        processes_of(cluster),
        find_postmaster(cluster.database_url or ""),
        database_of(cluster),
        own_only=frozenset({BENCH}),
    )
    idle.start()
    time.sleep(IDLE_SECONDS)
    idle_cpu = idle.stop()
    config = drivers.checkout_config(
        scenario.gateway,
        scenario.tokens,
        scenario.products,
        mode="closed",
        duration=args.duration,
        clients=args.checkout_clients,
    )
    account = CpuAccount(
        processes_of(cluster),
        find_postmaster(cluster.database_url or ""),
        database_of(cluster),
        own_only=frozenset({BENCH}),
    )
    account.start()
    raw = drivers.run_checkouts(config)
    # What the saga still does after the last confirmation (events consumed, relays) is part of it.
    settled = wait_quiet(shop)
    cpu = account.stop()
    summary = checkout_summary(raw)
    cpu["processes_ms"]["load generator (node)"] = summary["load_generator_cpu_ms"]
    cpu["settle_s"] = settled
    return {"checkout": summary, "checkout_cpu": cpu, "idle_cpu": idle_cpu}


def load_phases(cluster: Cluster, scenario: Scenario, args: argparse.Namespace) -> dict[str, Any]:
    gateway = scenario.gateway
    say(f"warming up ({args.warmup:.0f} s of checkouts)")
    warm = drivers.checkout_config(gateway, scenario.tokens, scenario.products, mode="closed", duration=args.warmup)
    drivers.run_checkouts(warm | {"clients": 8})
    quiet(cluster)
    say(f"order placements ({args.clients} connections, {args.duration:.0f} s)")
    results: dict[str, Any] = {
        "order_placement": drivers.order_placements(
            gateway, scenario.tokens, scenario.products, clients=args.clients, duration=args.duration
        )
    }
    if args.listing_duration > 0:
        say("product listing through the gateway and on the catalog directly")
        for key, url in (("listing_gateway", gateway), ("listing_catalog_direct", cluster.url("catalog"))):
            quiet(cluster)
            results[key] = drivers.listing(url, clients=args.clients, duration=args.listing_duration)
    say(f"confirmed checkouts ({args.checkout_clients} clients, {args.duration:.0f} s)")
    results.update(checkouts(cluster, scenario, args))
    return results


def measure_shop(database_url: str, args: argparse.Namespace) -> dict[str, Any]:
    cluster = bench_cluster(database_url, args.log_dir)
    say(f"starting the shop (logs in {args.log_dir})")
    cluster.start()
    try:
        cluster.wait_ready(120)
        customers = max(args.clients, args.checkout_clients)
        scenario = asyncio.run(
            prepare(cluster.url("gateway"), admin=(ADMIN_EMAIL, ADMIN_PASSWORD), customers=customers, products=20)
        )
        results = load_phases(cluster, scenario, args)
        results["peak_rss_mb"] = cluster.peak_rss_mb()
        results["restarts"] = cluster.restarts()
        return results
    finally:
        cluster.stop()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    results: dict[str, Any] = {
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            # The build matters as much as the version (see tools/pick-python).
            "python_executable": os.path.realpath(sys.executable),
            "platform": platform.platform(),
            "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        },
        "settings": {k: v for k, v in vars(args).items() if k not in ("output", "previous", "log_dir")},
    }
    say(f"Python {results['machine']['python']} at {results['machine']['python_executable']}")
    with scratch_database(server_url()) as database_url:
        results.update(measure_shop(database_url, args))
        say(f"pgbench bounds ({args.pgbench_duration:.0f} s each)")
        results["pgbench"] = shop_bounds(database_url, clients=args.pgbench_clients, duration=args.pgbench_duration)
    say(f"stock commits through the catalog's handler and in plain SQL ({args.stock_duration:.0f} s each)")
    try:
        results["stock"] = stock.run(server_url(), seconds=args.stock_duration, pgbench_seconds=args.stock_duration)
    except Exception as exc:  # its failure must not hide every other figure
        results["stock"] = {"error": f"{type(exc).__name__}: {exc}"}
    results["seconds"] = round(time.monotonic() - started, 1)
    print(report.publish(results, args.output, args.previous))
    return 0


if __name__ == "__main__":
    sys.exit(main())
