"""The load generators, run as subprocesses so that they cost the shared cores little: wrk (with
load/wrk.lua) for order placements and listings, Node.js (load/*.js) for the multi-step checkout and
as wrk's stand-in where wrk is not installed. Each prints one JSON line that is read here."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tools.bench.stats import latency_summary, rounded

LOAD = Path(__file__).resolve().parent / "load"
WRK_MISSING = (
    "wrk is not installed (apt-get install -y wrk): order placements come from load/orders.js instead "
    "and the listing figures are left out"
)


class LoadError(RuntimeError):
    """A load generator failed or printed no result."""


@contextmanager
def private_file(text: str, suffix: str) -> Iterator[Path]:
    """A file only this user can read (it holds access tokens), removed afterwards."""
    handle, name = tempfile.mkstemp(prefix="shop-bench-", suffix=suffix)
    try:
        with os.fdopen(handle, "w") as out:
            out.write(text)
        yield Path(name)
    finally:
        Path(name).unlink(missing_ok=True)


def last_json_line(stdout: str) -> dict[str, Any]:
    for line in reversed(stdout.splitlines()):
        if line.startswith("{"):
            return dict(json.loads(line))
    raise LoadError(f"no JSON result in: {stdout[-500:]!r}")


def run_node(script: str, config: dict[str, Any], timeout: float) -> dict[str, Any]:
    node = shutil.which("node")
    if node is None:
        raise LoadError("node is not installed (Node.js 18+ runs tools/bench/load/*.js)")
    with private_file(json.dumps(config), ".json") as path:
        done = subprocess.run([node, str(LOAD / script), str(path)], capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise LoadError(f"{script} exited with {done.returncode}: {done.stderr.strip()[-1000:]}")
    return last_json_line(done.stdout)


def checkout_config(
    gateway: str, tokens: list[str], products: list[str], *, mode: str, duration: float, **options: Any
) -> dict[str, Any]:
    """The settings of load/checkout.js (see its header); `options` overrides the defaults."""
    return {
        "gateway": gateway,
        "tokens": tokens,
        "products": products,
        "mode": mode,
        "duration_s": duration,
        "clients": 32,
        "rate": 10.0,
        "timeout_ms": 30_000,
        "max_attempts": 4,
        "payment_start_within_s": 30,
        "payment_retry_ms": 100,
        "confirm_within_s": 60,
        "first_poll_ms": 300,
        "poll_ms": 100,
        "poll_max_ms": 500,
        "long_poll_s": 10,
        "max_in_flight": 4000,
        **options,
    }


def run_checkouts(config: dict[str, Any]) -> dict[str, Any]:
    # Every request has its own deadline and every wait its own limit, so a run ends; this is only the
    # backstop for a load script that hangs.
    bound = config["duration_s"] + 600
    return run_node("checkout.js", config, timeout=bound)


def run_wrk(url: str, *, connections: int, duration: float, data: str | None = None) -> dict[str, Any]:
    """wrk on `url` with load/wrk.lua; with `data` (its token/product lines) it places orders."""
    wrk = shutil.which("wrk")
    assert wrk is not None
    command = [wrk, "-t2", f"-c{connections}", f"-d{max(1, round(duration))}s", "--timeout", "30s"]
    command += ["-s", str(LOAD / "wrk.lua"), url]
    with private_file(data or "", ".txt") as path:
        done = subprocess.run(
            command + (["--", str(path)] if data else []), capture_output=True, text=True, timeout=duration + 60
        )
    if done.returncode != 0:
        raise LoadError(f"wrk exited with {done.returncode}: {done.stderr.strip()[-500:]}")
    raw = last_json_line(done.stdout)
    seconds = raw["duration_us"] / 1e6
    errors = sum(raw["errors"].values())
    return {
        "client": "wrk",
        "clients": connections,
        "seconds": round(seconds, 2),
        "count": raw["requests"] - raw["errors"]["status"],
        # Answered with 2xx/3xx only: an error answered fast must not count as throughput.
        "per_second": round((raw["requests"] - raw["errors"]["status"]) / seconds, 1),
        "p50_ms": rounded(raw["p50_us"] / 1000),
        "p99_ms": rounded(raw["p99_us"] / 1000),
        "mean_ms": rounded(raw["mean_us"] / 1000),
        "errors": errors,
        "error_kinds": {k: v for k, v in raw["errors"].items() if v},
    }


def order_placements(gateway: str, tokens: list[str], products: list[str], *, clients: int, duration: float) -> dict:
    """POST /api/orders with 2 lines from `clients` connections, from wrk or else load/orders.js."""
    if shutil.which("wrk"):
        lines = [f"token {t}" for t in tokens] + [f"product {p}" for p in products]
        return run_wrk(gateway, connections=clients, duration=duration, data="\n".join(lines) + "\n")
    config = {
        "gateway": gateway,
        "tokens": tokens,
        "products": products,
        "clients": clients,
        "duration_s": duration,
        "timeout_ms": 30_000,
    }
    raw = run_node("orders.js", config, timeout=duration + 60)
    ok = raw["latencies_ms"]
    return {
        "client": "node (wrk missing)",
        "note": WRK_MISSING,
        "clients": clients,
        "seconds": round(raw["elapsed_s"], 2),
        "count": len(ok),
        "per_second": round(len(ok) / raw["elapsed_s"], 1),
        **latency_summary(ok, 50, 99),
        "errors": sum(n for status, n in raw["statuses"].items() if status != "201"),
        "error_kinds": {status: n for status, n in raw["statuses"].items() if status != "201"},
        "load_generator_cpu_ms": round(raw["cpu"]["user_ms"] + raw["cpu"]["system_ms"], 1),
    }


def listing(url: str, *, clients: int, duration: float) -> dict[str, Any] | None:
    """GET of one page of products from wrk (None without wrk: the figure is then left out)."""
    if not shutil.which("wrk"):
        return None
    return run_wrk(f"{url}/api/products?page_size=20", connections=clients, duration=duration)
