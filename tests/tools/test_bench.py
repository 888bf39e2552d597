"""The benchmark's own arithmetic (figures, targets, comparison) on made-up results, and its CPU
accounting against real processes and real PostgreSQL sessions."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psutil
import psycopg2
import pytest

from shopkit import testing
from shopkit.settings import KitSettings
from tools.bench import report
from tools.bench.cpu import ELSEWHERE, SERVER, STARTING, CpuAccount, find_postmaster, session_kind
from tools.bench.stats import checkout_summary, unclean_answers


def order(status: str, created: str, confirmed: str | None) -> dict[str, Any]:
    return {"id": created, "status": status, "created_at": created, "confirmed_at": confirmed, "polls": 1}


def checkout_result(orders: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "clients": 2,
        "elapsed_s": 2.0,
        "arrivals": len(orders),
        "orders": orders,
        "responses": {"place": {"201": len(orders)}},
        "refusals": {},
        "abandoned": {},
        "cpu": {"user_ms": 30.0, "system_ms": 10.0},
    }


@pytest.mark.unit
def test_checkout_latency_comes_from_the_order_timeline() -> None:
    summary = checkout_summary(
        checkout_result(
            [
                order("confirmed", "2025-01-01T00:00:00+00:00", "2025-01-01T00:00:00.250000+00:00"),
                order("confirmed", "2025-01-01T00:00:01Z", "2025-01-01T00:00:01.750Z"),
                order("pending_payment", "2025-01-01T00:00:02Z", None),
            ]
        )
    )
    assert summary["confirmed"] == 2 and summary["per_second"] == 1.0
    assert summary["p50_ms"] == 250.0 and summary["p99_ms"] == 750.0
    assert summary["all_terminal"] is False
    assert summary["load_generator_cpu_ms"] == 40.0


@pytest.mark.unit
def test_only_503_and_429_are_clean_refusals() -> None:
    answers = {"place": {"201": 5, "503": 2, "429": 1}, "payment": {"504": 1, "timeout": 2, "409": 3}}
    assert unclean_answers(answers) == {"payment": {"504": 1, "timeout": 2}}


@pytest.mark.unit
def test_backend_titles_name_the_service_only_on_the_runs_database() -> None:
    assert session_kind("postgres: 15/main: shop_orders bench_1 127.0.0.1(4242) idle", "bench_1") == "orders"
    assert session_kind("postgres: shop_catalog bench_1 [local] UPDATE", "bench_1") == "catalog"
    assert session_kind("postgres: 15/main: shop_orders shop_test_9 127.0.0.1(1) idle", "bench_1") == ELSEWHERE
    assert session_kind("postgres: 15/main: checkpointer ", "bench_1") == SERVER
    # Just forked: still the postmaster's command line, its role not known yet.
    assert session_kind("/usr/lib/postgresql/15/bin/postgres -D /var/lib/pg", "bench_1") == STARTING
    assert session_kind("postgres: 15/main: postgres bench_1 127.0.0.1(5) SELECT", "bench_1") == SERVER


def results(placements: float, p99: float, rss: float) -> dict[str, Any]:
    return {
        "order_placement": {
            "clients": 32,
            "client": "wrk",
            "per_second": placements,
            "p50_ms": 50.0,
            "p99_ms": p99,
            "errors": 0,
        },
        "pgbench": {"place_order_tx": {"per_second": 1000.0, "clients": 32}},
        "peak_rss_mb": {"orders": rss, "stripe-sandbox": 300.0},
    }


@pytest.mark.unit
def test_targets_and_the_change_against_the_previous_run(tmp_path: Path) -> None:
    output, previous = tmp_path / "bench-results.json", tmp_path / "bench-results.previous.json"
    report.publish(results(placements=80.0, p99=300.0, rss=150.0), output, previous)
    text = report.publish(results(placements=120.0, p99=200.0, rss=250.0), output, previous)

    written = json.loads(output.read_text())
    assert written["figures"]["placements.ratio"] == 0.12
    assert written["change_vs_previous_pct"]["placements.per_second"] == 50.0
    assert sorted(written["targets_missed"]) == ["peak_rss_mb.orders"]  # a sandbox has no RSS target
    assert json.loads(previous.read_text())["figures"]["placements.per_second"] == 80.0
    assert "+50.0 %" in text and "MISSED" in text


def burn(seconds: float) -> subprocess.Popen[bytes]:
    code = f"import time\nend = time.process_time() + {seconds}\nwhile time.process_time() < end: pass\ntime.sleep(30)"
    return subprocess.Popen([sys.executable, "-c", code])


def query_as_orders(url: str, loops: int) -> None:
    """One short-lived session as role shop_orders that spends CPU in its backend."""
    connection = psycopg2.connect(url)
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM generate_series(1, %s)", (loops,))
    finally:
        connection.close()


@pytest.mark.integration
def test_cpu_of_processes_and_of_a_services_sessions_that_came_and_went() -> None:
    with testing.fresh_database(services=("orders",)) as admin_url:
        postmaster = find_postmaster(admin_url)
        if postmaster is None:
            pytest.skip("PostgreSQL does not run on this machine: its processes cannot be read")
        url = KitSettings(database_url=admin_url).service_database_url("orders").replace("+psycopg2", "")
        child = burn(0.3)
        try:
            # Each session lives a fraction of a second: seen by the sampler, its end by the exit accounting.
            account = CpuAccount({"child": psutil.Process(child.pid)}, postmaster, urlsplit(admin_url).path[1:], 0.05)
            account.start()
            for _ in range(3):
                query_as_orders(url, 2_000_000)
            deadline = time.monotonic() + 30
            while sum(psutil.Process(child.pid).cpu_times()[:2]) < 0.3 and time.monotonic() < deadline:
                time.sleep(0.1)
            spent = account.stop()
        finally:
            child.kill()
            child.wait()
    assert 250 <= spent["processes_ms"]["child"] <= 600, spent
    postgres = spent["postgres"]
    assert postgres["backends_seen"] >= 3, postgres
    # Three generate_series of 2e6 rows take well over 100 ms of backend CPU on any machine.
    assert postgres["exited_tail_ms"] + postgres["sessions"].get("orders", 0.0) >= 100, postgres


def test_a_process_counted_without_its_reaped_children_does_not_count_its_load_generator_twice() -> None:
    me = psutil.Process()
    account = CpuAccount({"bench": me, "bench and its children": me}, None, "", own_only=frozenset({"bench"}))
    account.start()
    code = "import time\nend = time.process_time() + 0.3\nwhile time.process_time() < end: pass"
    subprocess.run([sys.executable, "-c", code], check=True)  # reaped: its CPU joins our children's
    spent = account.stop()["processes_ms"]
    assert spent["bench and its children"] >= 280, spent
    assert spent["bench"] < 150, spent
