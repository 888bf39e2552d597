"""Where the time goes: the bench's closed loop of checkouts while py-spy samples every process of the
shop (the services, the gateway and the sandboxes), then, per process, the functions that held the
GIL the most (inclusive and self).

    python -m tools.bench.profile [--duration 20] [--clients 32] [--top 25] [--out var/profile]

Flame graphs: `--svg` also writes one SVG per process (open it in a browser). Statements: `--sql`
also counts the SQL statements per confirmed checkout, from pg_stat_statements (which must be in the
server's shared_preload_libraries).
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import psycopg2

from tools.bench import drivers
from tools.bench.infra import ADMIN_EMAIL, ADMIN_PASSWORD, bench_cluster, scratch_database, server_url
from tools.bench.scenario import prepare
from tools.supervisor import REPO_ROOT


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tools.bench.profile", description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "var" / "profile")
    parser.add_argument("--svg", action="store_true", help="also write a flame graph per process")
    parser.add_argument(
        "--sql", action="store_true", help="also count statements per checkout (needs pg_stat_statements loaded)"
    )
    return parser.parse_args(argv)


def py_spy() -> str:
    found = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(found).exists():
        raise SystemExit("py-spy is not installed (it is in the dev dependencies: make install)")
    return found


def record(pids: dict[str, int], out: Path, seconds: float, fmt: str) -> list[subprocess.Popen[bytes]]:
    suffix = "svg" if fmt == "flamegraph" else "txt"
    return [
        subprocess.Popen(
            [py_spy(), "record", "--gil", "--nonblocking", "--rate", "200", "--duration", str(int(seconds)),
             "--format", fmt, "--output", str(out / f"{name}.{suffix}"), "--pid", str(pid)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for name, pid in pids.items()
    ]  # fmt: skip


def summarise(folded: Path, top: int) -> str:
    """Inclusive and self samples per function from py-spy's raw (folded) output."""
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    for line in folded.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_short(frame) for frame in stack.split(";") if frame]
        total += count
        for frame in set(frames[1:]):
            inclusive[frame] += count
        if frames:
            own[frames[-1]] += count
    if not total:
        return "  (no samples)"
    lines = [f"  {total} samples holding the GIL"]
    lines += [f"  {100 * n / total:5.1f}% incl  {frame}" for frame, n in inclusive.most_common(top)]
    lines += [f"  {100 * n / total:5.1f}% self  {frame}" for frame, n in own.most_common(top // 2)]
    return "\n".join(lines)


def _sql(database_url: str, *statements: str) -> list[tuple[Any, ...]]:
    """Run `statements` in autocommit; the rows of the last one (none if it returns none)."""
    connection = psycopg2.connect(database_url)
    connection.autocommit = True
    try:
        with connection.cursor() as cursor:
            for statement in statements:
                cursor.execute(statement)
            return list(cursor.fetchall()) if cursor.description else []
    finally:
        connection.close()


def sql_reset(database_url: str) -> None:
    try:
        _sql(database_url, "CREATE EXTENSION IF NOT EXISTS pg_stat_statements", "SELECT pg_stat_statements_reset()")
    except psycopg2.Error as exc:
        raise SystemExit(
            "--sql needs pg_stat_statements loaded: ALTER SYSTEM SET shared_preload_libraries ="
            f" 'pg_stat_statements', then restart PostgreSQL ({exc})"
        ) from exc


def sql_counts(database_url: str) -> list[tuple[int, str]]:
    """Calls per statement since the reset, in the scratch database, most called first."""
    rows = _sql(
        database_url,
        "SELECT s.calls, s.query FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid"
        " WHERE d.datname = current_database() ORDER BY s.calls DESC",
    )
    return [(int(calls), str(query)) for calls, query in rows]


def _short(frame: str) -> str:
    """`function (path/to/module.py:line)` as `function (module.py)`: lines differ per sample."""
    name, _, where = frame.partition(" (")
    return f"{name} ({Path(where.rstrip(')').split(':')[0]).name})" if where else name


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.sql:
        sql_reset(server_url())  # fails now, not after the warm-up, if the extension is not loaded
    with scratch_database(server_url()) as database_url:
        cluster = bench_cluster(database_url, args.out / "logs")
        cluster.start()
        try:
            cluster.wait_ready(120)
            admin = (ADMIN_EMAIL, ADMIN_PASSWORD)
            scenario = asyncio.run(prepare(cluster.url("gateway"), admin=admin, customers=args.clients, products=20))
            gateway = scenario.gateway
            warm = drivers.checkout_config(gateway, scenario.tokens, scenario.products, mode="closed", duration=3)
            drivers.run_checkouts(warm | {"clients": 8})
            pids = {name: pid for name, pid in cluster.pids().items() if pid}
            recorders = record(pids, args.out, args.duration + 2, "raw")
            if args.svg:
                recorders += record(pids, args.out, args.duration + 2, "flamegraph")
            time.sleep(1)
            if args.sql:
                sql_reset(database_url)
            config = drivers.checkout_config(
                gateway, scenario.tokens, scenario.products, mode="closed", duration=args.duration, clients=args.clients
            )
            result = drivers.run_checkouts(config)
            for recorder in recorders:
                recorder.wait(60)
            statements = sql_counts(database_url) if args.sql else []
        finally:
            cluster.stop()
    confirmed = sum(1 for order in result.get("orders", []) if order.get("status") == "confirmed")
    print(f"checkouts: {confirmed} confirmed in {args.duration:.0f} s")
    if statements:
        per = max(confirmed, 1)
        total = sum(calls for calls, _ in statements)
        print(f"\nSQL statements per confirmed checkout: {total / per:.1f}")
        for calls, query in statements[: args.top]:
            print(f"  {calls / per:6.2f}  {' '.join(query.split())[:150]}")
    for name in pids:
        print(f"\n{name}\n{summarise(args.out / f'{name}.txt', args.top)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
