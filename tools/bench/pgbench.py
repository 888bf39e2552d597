"""Plain PostgreSQL in the same run: pgbench with the shop's write patterns (sql/*.sql), the bounds
that the shop's figures are divided by."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg2

SQL = Path(__file__).resolve().parent / "sql"
MISSING = "pgbench is not installed (apt-get install -y postgresql-client)"


class PgbenchError(RuntimeError):
    pass


def execute(url: str, statements: str, params: dict[str, Any] | None = None) -> None:
    connection = psycopg2.connect(url)
    connection.autocommit = True
    try:
        with connection.cursor() as cursor:
            cursor.execute(statements, params)
    finally:
        connection.close()


def pgbench(url: str, script: Path, *, clients: int, duration: float, variables: dict[str, int] | None = None) -> dict:
    """Transactions per second of `script` (one pgbench run without vacuum) on the database of `url`."""
    binary = shutil.which("pgbench")
    if binary is None:
        raise PgbenchError(MISSING)
    parts = urlsplit(url)
    env = dict(os.environ)
    if parts.password:
        env["PGPASSWORD"] = parts.password
    command = [binary, "-n", "-h", parts.hostname or "127.0.0.1", "-p", str(parts.port or 5432)]
    command += ["-U", parts.username or "postgres", "-c", str(clients), "-j", str(min(clients, os.cpu_count() or 2))]
    command += ["-T", str(max(1, round(duration))), "-f", str(script)]
    command += [f"-D{name}={value}" for name, value in (variables or {}).items()]
    done = subprocess.run(
        [*command, parts.path.lstrip("/")], env=env, capture_output=True, text=True, timeout=duration + 60
    )
    tps = re.search(r"tps = ([\d.]+) \(without initial connection time\)", done.stdout)
    if done.returncode != 0 or tps is None:
        raise PgbenchError(f"pgbench {script.name} failed: {(done.stderr or done.stdout).strip()[-500:]}")
    latency = re.search(r"latency average = ([\d.]+) ms", done.stdout)
    return {
        "per_second": round(float(tps.group(1)), 1),
        "latency_avg_ms": float(latency.group(1)) if latency else None,
        "clients": clients,
    }


def shop_bounds(url: str, *, clients: int, duration: float) -> dict[str, Any]:
    """(a) an order, its two lines and an outbox row in one transaction; (b) one checkout saga, its
    four transactions with their inbox and outbox rows (sql/saga.sql: one pgbench transaction = one saga)."""
    if shutil.which("pgbench") is None:
        return {"skipped": MISSING}
    execute(url, (SQL / "schema.sql").read_text())
    results: dict[str, Any] = {}
    for name, script in (("place_order_tx", "place_order.sql"), ("saga_tx", "saga.sql")):
        try:
            results[name] = pgbench(url, SQL / script, clients=clients, duration=duration)
        except PgbenchError as exc:
            results[name] = {"error": str(exc)}
    return results
