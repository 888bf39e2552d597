"""Percentiles and the summaries of what the load scripts report."""

from __future__ import annotations

import statistics
from collections import Counter
from datetime import datetime
from typing import Any

TERMINAL = frozenset({"confirmed", "cancelled", "refunded"})


def percentile(samples: list[float], q: float) -> float | None:
    """Nearest-rank percentile (None for no samples)."""
    if not samples:
        return None
    ordered = sorted(samples)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def rounded(value: float | None, digits: int = 1) -> float | None:
    return None if value is None else round(value, digits)


def latency_summary(ms: list[float], *quantiles: int) -> dict[str, float | None]:
    figures = {f"p{q}_ms": rounded(percentile(ms, q)) for q in quantiles}
    figures["mean_ms"] = rounded(statistics.fmean(ms) if ms else None)
    return figures


def instant(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def confirmation_ms(order: dict[str, Any]) -> float | None:
    """Placement to confirmed, from the order's own timeline (created_at to the `confirmed` step)."""
    if not order.get("confirmed_at"):
        return None
    return (instant(order["confirmed_at"]) - instant(order["created_at"])).total_seconds() * 1000


def checkout_summary(result: dict[str, Any]) -> dict[str, Any]:
    """Confirmed checkouts per second and placement-to-confirmed percentiles of a checkout.js run."""
    orders = result["orders"]
    took = [ms for ms in map(confirmation_ms, orders) if ms is not None]
    client = [o["client_ms"] for o in orders if o.get("client_ms") is not None]
    statuses = Counter(o["status"] for o in orders)
    elapsed = result["elapsed_s"]
    return {
        "clients": result.get("clients"),
        "seconds": round(elapsed, 2),
        "started": result["arrivals"],
        "confirmed": len(took),
        "per_second": round(len(took) / elapsed, 1) if elapsed else 0.0,
        **latency_summary(took, 50, 95, 99),
        "client_p50_ms": rounded(percentile(client, 50)),
        "order_statuses": dict(statuses),
        "all_terminal": all(o["status"] in TERMINAL for o in orders),
        "abandoned": {step: row["count"] for step, row in result["abandoned"].items()},
        "polls_per_checkout": round(sum(o["polls"] for o in orders) / len(orders), 2) if orders else None,
        "responses": result["responses"],
        "refusals": result["refusals"],
        "load_generator_cpu_ms": round(result["cpu"]["user_ms"] + result["cpu"]["system_ms"], 1),
    }


def unclean_answers(responses: dict[str, dict[str, int]]) -> dict[str, dict[str, int]]:
    """Per step, the answers a client must never get: a 5xx other than 503, a timeout, a broken
    connection (the load scripts count a request that got no answer under its error code)."""
    bad: dict[str, dict[str, int]] = {}
    for step, row in responses.items():
        for key, n in row.items():
            if not key.isdigit() or (int(key) >= 500 and key != "503"):
                bad.setdefault(step, {})[key] = n
    return bad
