"""Create the database, one schema and one role per service; each role owns its schema and can touch
no other. Used by `make run-distributed`, `.ci/run` and the tests; safe to run again.

    python -m shopkit.provision postgresql://postgres@127.0.0.1:5432/shop
"""

from __future__ import annotations

import argparse
from urllib.parse import urlsplit, urlunsplit

import psycopg2
from psycopg2 import sql

from shopkit.settings import KitSettings, service_role

SERVICES = ("auth", "catalog", "orders", "payments")


def ensure_database(admin_url: str) -> None:
    parts = urlsplit(admin_url)
    name = parts.path.lstrip("/") or "shop"
    maintenance = urlunsplit((parts.scheme.split("+")[0], parts.netloc, "/postgres", parts.query, ""))
    connection = psycopg2.connect(maintenance)
    connection.autocommit = True
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
            if cursor.fetchone() is None:
                cursor.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    finally:
        connection.close()


def provision(admin_url: str, settings: KitSettings | None = None, services: tuple[str, ...] = SERVICES) -> None:
    settings = settings or KitSettings()
    ensure_database(admin_url)
    parts = urlsplit(admin_url)
    connection = psycopg2.connect(urlunsplit((parts.scheme.split("+")[0], *parts[1:])))
    connection.autocommit = True
    database = parts.path.lstrip("/") or "shop"
    try:
        with connection.cursor() as cursor:
            # Two provisioners racing (parallel test workers) would trip over CREATE ROLE; take turns.
            cursor.execute("SELECT pg_advisory_lock(727274)")
            for service in services:
                role = service_role(service)
                cursor.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,))
                if cursor.fetchone() is None:
                    cursor.execute(
                        sql.SQL("CREATE ROLE {} LOGIN PASSWORD %s").format(sql.Identifier(role)),
                        (settings.role_password(service),),
                    )
                cursor.execute(
                    sql.SQL("CREATE SCHEMA IF NOT EXISTS {} AUTHORIZATION {}").format(
                        sql.Identifier(service), sql.Identifier(role)
                    )
                )
                cursor.execute(
                    sql.SQL("ALTER ROLE {} IN DATABASE {} SET search_path = {}").format(
                        sql.Identifier(role), sql.Identifier(database), sql.Identifier(service)
                    )
                )
                cursor.execute(sql.SQL("REVOKE ALL ON SCHEMA public FROM {}").format(sql.Identifier(role)))
                cursor.execute(
                    sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(sql.Identifier(database), sql.Identifier(role))
                )
            cursor.execute("REVOKE CREATE ON SCHEMA public FROM PUBLIC")
            for service in services:
                cursor.execute(sql.SQL("REVOKE ALL ON SCHEMA {} FROM PUBLIC").format(sql.Identifier(service)))
            cursor.execute("SELECT pg_advisory_unlock(727274)")
    finally:
        connection.close()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m shopkit.provision", description=__doc__)
    parser.add_argument("admin_url", nargs="?", help="a superuser URL to the shop's database")
    args = parser.parse_args()
    settings = KitSettings()
    url = args.admin_url or settings.database_url
    if not url:
        parser.error("give the admin URL or set SHOP_DATABASE_URL")
    provision(url, settings)
    print(f"provisioned {', '.join(SERVICES)} in {urlsplit(url).path.lstrip('/')}")


if __name__ == "__main__":
    main()
