"""`python -m shopkit.migrate upgrade` (a deployment's init step) brings each named service's schema to
head as that service's own role, and leaves the others alone."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psycopg2
import pytest

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[3]


def tables(pg_url: str, schema: str) -> set[str]:
    connection = psycopg2.connect(pg_url)
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT tablename FROM pg_tables WHERE schemaname = %s", (schema,))
            return {name for (name,) in cursor.fetchall()}
    finally:
        connection.close()


def migrate(pg_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SHOP_DATABASE_URL": pg_url, "SHOP_ENVIRONMENT": "test"}
    command = [sys.executable, "-m", "shopkit.migrate", "upgrade", *args]
    return subprocess.run(command, env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)


def test_upgrade_applies_the_named_services_migrations_once(pg_url: str) -> None:
    first = migrate(pg_url, "catalog", "orders")
    assert first.returncode == 0, first.stderr
    assert {"alembic_version", "products", "outbox"} <= tables(pg_url, "catalog")
    assert {"alembic_version", "orders"} <= tables(pg_url, "orders")
    assert tables(pg_url, "payments") == set()
    again = migrate(pg_url, "catalog")
    assert again.returncode == 0, again.stderr


def test_upgrade_names_an_unknown_service(pg_url: str) -> None:
    result = migrate(pg_url, "inventory")
    assert result.returncode == 2 and "unknown service(s) inventory" in result.stderr
