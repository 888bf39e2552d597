"""Alembic, one migration history per service, applied at start-up.

A service's `migrations/env.py` is three lines: import its models and call `run_migrations(metadata)`.
`python -m shopkit.migrate revision <service> -m "message"` autogenerates a new revision;
`python -m shopkit.migrate upgrade [service ...]` applies them ahead of start-up (a deployment's
init step: each service as its own role, from SHOP_DATABASE_URL and its SHOP_DB_PASSWORD_<SERVICE>)."""

from __future__ import annotations

import argparse
import importlib
import zlib
from pathlib import Path

from alembic import command, context
from alembic.config import Config
from sqlalchemy import MetaData, text
from sqlalchemy.engine import Connection

from shopkit.db import Database, kit_metadata
from shopkit.provision import SERVICES
from shopkit.settings import KitSettings


def alembic_config(migrations: Path, connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(migrations))
    config.set_main_option("version_path_separator", "os")
    config.attributes["connection"] = connection
    return config


def upgrade(db: Database, migrations: Path) -> None:
    """Bring the service's schema to head. Replicas starting together take turns (advisory lock)."""
    with db.engine.connect() as connection:
        if connection.dialect.name == "postgresql":
            lock_id = zlib.crc32(f"shop-migrations-{db.service}".encode())
            connection.execute(text("SELECT pg_advisory_lock(:id)"), {"id": lock_id})
            connection.commit()
            try:
                command.upgrade(alembic_config(migrations, connection), "head")
                connection.commit()
            finally:
                connection.execute(text("SELECT pg_advisory_unlock(:id)"), {"id": lock_id})
                connection.commit()
        else:
            command.upgrade(alembic_config(migrations, connection), "head")
            connection.commit()


def run_migrations(metadata: MetaData) -> None:
    """Body of every service's migrations/env.py."""
    connection = context.config.attributes.get("connection")
    if connection is None:
        raise RuntimeError("run migrations through shopkit.migrate, which hands alembic a connection")
    context.configure(
        connection=connection,
        target_metadata=[metadata, kit_metadata],
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def migrations_of(service: str) -> Path:
    module = importlib.import_module(f"{service}.app")
    return Path(module.__file__).parent / "migrations"  # type: ignore[arg-type]


def upgrade_services(services: list[str], settings: KitSettings | None = None) -> None:
    """What each service does at start-up, without starting it: the same advisory lock, so it is safe
    beside replicas that are starting."""
    settings = settings or KitSettings()
    for service in services:
        db = Database(settings.service_database_url(service), service=service, pool_size=1)
        try:
            upgrade(db, migrations_of(service))
        finally:
            db.dispose()


def _revision(service: str, message: str, url: str | None) -> None:
    migrations = migrations_of(service)
    db = Database(url or "sqlite://", service=service)
    with db.engine.connect() as connection:
        config = alembic_config(migrations, connection)
        command.upgrade(config, "head")
        command.revision(config, message=message, autogenerate=True)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m shopkit.migrate")
    sub = parser.add_subparsers(dest="command", required=True)
    rev = sub.add_parser("revision", help="autogenerate a revision from the service's models")
    rev.add_argument("service")
    rev.add_argument("-m", "--message", required=True)
    rev.add_argument("--url", help="database to compare against (default: an empty in-memory SQLite)")
    up = sub.add_parser("upgrade", help="bring the services' schemas to head, each as its own role")
    up.add_argument("services", nargs="*", help=f"default: every service ({', '.join(SERVICES)})")
    args = parser.parse_args()
    if args.command == "revision":
        _revision(args.service, args.message, args.url)
    elif args.command == "upgrade":
        unknown = sorted(set(args.services) - set(SERVICES))
        if unknown:
            parser.error(f"unknown service(s) {', '.join(unknown)}; known: {', '.join(SERVICES)}")
        upgrade_services(args.services or list(SERVICES))


if __name__ == "__main__":
    main()
