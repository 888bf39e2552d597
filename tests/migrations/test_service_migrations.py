"""Every service's Alembic history runs up to head and back down to nothing on both SQLite and
PostgreSQL (under the service's own role), with the kit's tables at their latest version."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import inspect

from shopkit.db import Database
from shopkit.migrate import alembic_config, upgrade
from shopkit.settings import KitSettings

pytestmark = pytest.mark.integration

SERVICES = ["auth", "catalog", "orders", "payments"]
KIT_TABLES = {"outbox", "inbox", "dead_letters"}


def migrations_of(service: str) -> Path:
    module = importlib.import_module(f"{service}.app")
    return Path(module.__file__).parent / "migrations"  # type: ignore[arg-type]


def tables(db: Database) -> set[str]:
    return set(inspect(db.engine).get_table_names()) - {"alembic_version"}


def round_trip(db: Database, service: str) -> None:
    migrations = migrations_of(service)
    upgrade(db, migrations)
    at_head = tables(db)
    assert KIT_TABLES <= at_head
    assert "ix_inbox_handled_at" in {i["name"] for i in inspect(db.engine).get_indexes("inbox")}
    with db.engine.connect() as connection:
        command.downgrade(alembic_config(migrations, connection), "base")
        connection.commit()
    assert tables(db) == set()
    upgrade(db, migrations)
    assert tables(db) == at_head


@pytest.mark.parametrize("service", SERVICES)
def test_history_round_trips_on_sqlite(service: str, tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / f'{service}.db'}", service=service)
    try:
        round_trip(db, service)
    finally:
        db.dispose()


@pytest.mark.parametrize("service", SERVICES)
def test_history_round_trips_on_postgresql_under_the_services_role(service: str, pg_url: str) -> None:
    db = Database(KitSettings(database_url=pg_url).service_database_url(service), service=service)
    try:
        round_trip(db, service)
    finally:
        db.dispose()
