"""The run's figures: each with its target (from the performance issue) and its change against the
previous run, as one table on stdout and a `figures` section in bench-results.json."""

from __future__ import annotations

import json
import math
import operator
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tools.bench.infra import SERVICES
from tools.bench.stats import TERMINAL

COMPARE: dict[str, Callable[[float, float], bool]] = {">=": operator.ge, "<=": operator.le, "<": operator.lt}


@dataclass(frozen=True)
class Figure:
    key: str
    label: str
    value: float | None
    unit: str = ""
    target: tuple[str, float] | None = None

    @property
    def met(self) -> bool | None:
        if self.target is None or self.value is None:
            return None
        op, bound = self.target
        return COMPARE[op](self.value, bound)


def ratio(part: float | None, whole: float | None) -> float | None:
    return round(part / whole, 3) if part and whole else None


def placement_figures(results: dict[str, Any]) -> Iterator[Figure]:
    entry = results.get("order_placement")
    if not entry:
        return
    client = f"{entry['clients']} connections, {entry['client']}"
    yield Figure("placements.per_second", f"order placements ({client})", entry["per_second"], "/s")
    yield Figure("placements.p50_ms", "  p50", entry["p50_ms"], "ms")
    yield Figure("placements.p99_ms", "  p99", entry["p99_ms"], "ms", ("<", 250))
    yield Figure("placements.errors", "  errors", entry["errors"], "", ("<=", 0))
    bound = results.get("pgbench", {}).get("place_order_tx", {}).get("per_second")
    yield Figure(
        "placements.ratio", "  / pgbench order + 2 lines + outbox", ratio(entry["per_second"], bound), "", (">=", 0.10)
    )


def checkout_figures(results: dict[str, Any]) -> Iterator[Figure]:
    entry = results.get("checkout")
    if not entry:
        return
    label = f"confirmed checkouts end to end ({entry['clients']} clients, closed loop)"
    yield Figure("checkouts.per_second", label, entry["per_second"], "/s")
    for q in (50, 95, 99):
        yield Figure(f"checkouts.p{q}_ms", f"  placement to confirmed p{q} (order timeline)", entry[f"p{q}_ms"], "ms")
    unfinished = sum(n for status, n in entry["order_statuses"].items() if status not in TERMINAL)
    yield Figure("checkouts.not_terminal", "  orders not terminal at the end", unfinished, "", ("<=", 0))
    bound = results.get("pgbench", {}).get("saga_tx", {}).get("per_second")
    yield Figure("checkouts.ratio", "  / pgbench saga (4 tx)", ratio(entry["per_second"], bound), "", (">=", 0.08))


def stock_figures(results: dict[str, Any]) -> Iterator[Figure]:
    entry = results.get("stock") or {}
    if "error" in entry or not entry:
        return
    for case, label, target in (("hot", "one hot product", 0.5), ("spread", "spread over 1,000 products", None)):
        yield Figure(
            f"stock.{case}.per_second",
            f"stock commits via the handler, {label}",
            entry[f"service_{case}_per_second"],
            "/s",
        )
        yield Figure(
            f"stock.{case}.pgbench", "  plain SQL FOR UPDATE (pgbench)", entry[f"pgbench_{case}_per_second"], "/s"
        )
        yield Figure(f"stock.{case}.ratio", "  ratio", entry[f"{case}_ratio"], "", (">=", target) if target else None)


def pgbench_figures(results: dict[str, Any]) -> Iterator[Figure]:
    for key, label in (("place_order_tx", "pgbench: order + 2 lines + outbox"), ("saga_tx", "pgbench: saga (4 tx)")):
        entry = results.get("pgbench", {}).get(key)
        if entry and "per_second" in entry:
            yield Figure(f"pgbench.{key}", f"{label}, {entry['clients']} clients", entry["per_second"], "/s")


def listing_figures(results: dict[str, Any]) -> Iterator[Figure]:
    for key, label in (("listing_gateway", "via the gateway"), ("listing_catalog_direct", "catalog directly")):
        entry = results.get(key)
        if entry:
            yield Figure(f"{key}.per_second", f"product listing {label} (wrk)", entry["per_second"], "/s")
            yield Figure(f"{key}.p99_ms", "  p99", entry["p99_ms"], "ms")


def cpu_rows(cpu: dict[str, Any], confirmed: int) -> dict[str, float]:
    """Milliseconds per confirmed checkout of every process and of PostgreSQL's parts."""
    rows = {name: ms / confirmed for name, ms in cpu["processes_ms"].items() if not math.isnan(ms)}
    postgres = cpu.get("postgres") or {"sessions": {}, "other_ms": 0.0, "exited_tail_ms": 0.0}
    rows |= {f"postgres sessions of {role}": ms / confirmed for role, ms in postgres["sessions"].items()}
    rows["postgres server (postmaster, writers, autovacuum)"] = postgres["other_ms"] / confirmed
    rows["postgres sessions after their last sample (est.)"] = postgres["exited_tail_ms"] / confirmed
    return rows


def idle_share(results: dict[str, Any], confirmed: int) -> float | None:
    """How much of the shop's CPU per checkout its idle background (timers, pollers) would be."""
    idle, cpu = results.get("idle_cpu"), results["checkout_cpu"]
    if not idle or not idle["window_s"]:
        return None
    per_second = sum(idle["processes_ms"].get(name, 0.0) for name in SERVICES) / idle["window_s"]
    return round(per_second * cpu["window_s"] / confirmed, 2)


def cpu_figures(results: dict[str, Any]) -> Iterator[Figure]:
    cpu, confirmed = results.get("checkout_cpu"), (results.get("checkout") or {}).get("confirmed")
    if not cpu or not confirmed:
        return
    rows = cpu_rows(cpu, confirmed)
    for name, value in rows.items():
        yield Figure(f"cpu_per_checkout.{name}", f"CPU per confirmed checkout: {name}", round(value, 2), "ms")
    shop = sum(rows.get(name, 0.0) for name in SERVICES)
    label = "CPU per checkout: the shop's processes (gateway + 4 services)"
    yield Figure("cpu_per_checkout.shop", label, round(shop, 2), "ms", ("<=", 15))
    share = idle_share(results, confirmed)
    yield Figure("cpu_per_checkout.shop_idle_share", "  of which their idle background", share, "ms")
    sessions = sum(v for name, v in rows.items() if name.startswith("postgres sessions of "))
    yield Figure(
        "cpu_per_checkout.shop_and_sessions", "  with their PostgreSQL sessions", round(shop + sessions, 2), "ms"
    )
    yield Figure("cpu_per_checkout.all", "  everything listed above", round(sum(rows.values()), 2), "ms")
    machine = cpu["machine_busy_ms"] / confirmed
    yield Figure("cpu_per_checkout.machine", "  the whole machine (other users too)", round(machine, 2), "ms")


def rss_figures(results: dict[str, Any]) -> Iterator[Figure]:
    for name, mb in (results.get("peak_rss_mb") or {}).items():
        target = ("<", 200.0) if name.split("-")[0] in SERVICES else None
        yield Figure(f"peak_rss_mb.{name}", f"peak RSS {name}", mb, "MB", target)


SECTIONS = (
    placement_figures,
    checkout_figures,
    stock_figures,
    pgbench_figures,
    listing_figures,
    cpu_figures,
    rss_figures,
)


def figures_of(results: dict[str, Any]) -> list[Figure]:
    return [figure for section in SECTIONS for figure in section(results)]


def change(now: float | None, before: Any) -> float | None:
    if now is None or not isinstance(before, int | float) or not before:
        return None
    return round(100 * (now - before) / abs(before), 1)


def number(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    text = f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}" if abs(value) < 1 else f"{value:.1f}"
    return f"{text} {unit}".strip()


def table(figures: list[Figure], previous: dict[str, Any]) -> str:
    rows = [("figure", "value", "target", "vs previous")]
    for f in figures:
        target = (
            f"{f.target[0]} {f.target[1]:g} {'ok' if f.met else 'MISSED'}" if f.target and f.met is not None else ""
        )
        delta = change(f.value, previous.get(f.key))
        rows.append((f.label, number(f.value, f.unit), target, "" if delta is None else f"{delta:+.1f} %"))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows)


def notes(results: dict[str, Any]) -> list[str]:
    lines = []
    if note := (results.get("order_placement") or {}).get("note"):
        lines.append(f"note: {note}")
    if "error" in (results.get("stock") or {}):
        lines.append(f"note: the stock bench failed: {results['stock']['error']}")
    if any(results.get("restarts", {}).values()):
        lines.append(f"note: processes restarted during the run: {results['restarts']}")
    if cpu := results.get("checkout_cpu"):
        pg = cpu.get("postgres") or {}
        lines.append(
            f"CPU window {cpu['window_s']} s (incl. {cpu['settle_s']} s settling); PostgreSQL sessions seen "
            f"{pg.get('backends_seen')}, exited in the window {pg.get('backends_exited')}; sessions of other "
            f"databases on the server (other users, left out) {pg.get('other_databases_ms')} ms"
        )
    return lines


def publish(results: dict[str, Any], output: Path, previous_path: Path) -> str:
    """Write the results (the file they replace becomes the previous run) and answer the report."""
    if output.exists():
        output.replace(previous_path)
    previous: dict[str, Any] = {}
    if previous_path.exists():
        previous = json.loads(previous_path.read_text()).get("figures", {})
    figures = figures_of(results)
    results["figures"] = {f.key: f.value for f in figures}
    results["targets_missed"] = [f.key for f in figures if f.met is False]
    results["change_vs_previous_pct"] = {
        f.key: change(f.value, previous.get(f.key)) for f in figures if f.key in previous
    }
    output.write_text(json.dumps(results, indent=2, default=str) + "\n")
    compared = f"compared with {previous_path}" if previous else "no previous run to compare with"
    lines = [table(figures, previous), *notes(results), f"figures written to {output} ({compared})"]
    return "\n".join(lines)
