"""Where the benchmark runs: the servers it uses, a scratch database, the shop in distributed mode."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg2
from psycopg2 import sql

from shopkit.testing import with_database
from tools.supervisor import Cluster, free_base_port

DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/postgres"
DEFAULT_AMQP = "amqp://guest:guest@127.0.0.1:5672/"
ADMIN_EMAIL = "bench-admin@example.com"
ADMIN_PASSWORD = "bench-admin-password"
SERVICES = ("gateway", "auth", "catalog", "orders", "payments")


def server_url() -> str:
    return os.environ.get("SHOP_BENCH_DATABASE_URL") or os.environ.get("SHOP_TEST_DATABASE_URL") or DEFAULT_PG


def amqp_url() -> str:
    return os.environ.get("SHOP_AMQP_URL") or os.environ.get("SHOP_TEST_AMQP_URL") or DEFAULT_AMQP


@contextmanager
def scratch_database(server: str, prefix: str = "shop_bench") -> Iterator[str]:
    """A new database on `server` (a superuser URL), dropped afterwards; yields its URL."""
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    url = with_database(server, name)
    try:
        yield url
    finally:
        connection = psycopg2.connect(with_database(server, "postgres"))
        connection.autocommit = True
        with connection.cursor() as cursor:
            cursor.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        connection.close()


def bench_cluster(database_url: str, log_dir: Path) -> Cluster:
    return Cluster(
        database_url=database_url,
        amqp_url=amqp_url(),
        base_port=free_base_port(),
        log_dir=log_dir,
        env={
            "SHOP_BUS_NAMESPACE": f"bench{uuid.uuid4().hex[:6]}.",
            "SHOP_VAR_DIR": str(log_dir / "var"),
            "SHOP_ADMIN_EMAIL": ADMIN_EMAIL,
            "SHOP_ADMIN_PASSWORD": ADMIN_PASSWORD,
            # The bench measures throughput; the per-user limits would measure themselves.
            "SHOP_RATE_LIMIT_ENABLED": "false",
            "SHOP_LOG_LEVEL": "WARNING",
        },
    )
