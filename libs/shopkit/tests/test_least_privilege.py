"""Each service role, as provisioned by shopkit.provision, owns its schema and can touch no other."""

from __future__ import annotations

import psycopg2
import pytest
from psycopg2 import errors

from shopkit.settings import KitSettings

pytestmark = pytest.mark.integration


def connect(pg_url: str, service: str) -> psycopg2.extensions.connection:
    url = KitSettings(database_url=pg_url).service_database_url(service).replace("+psycopg2", "")
    connection = psycopg2.connect(url)
    connection.autocommit = True
    return connection


def test_a_service_role_cannot_read_or_write_another_services_schema(pg_url: str) -> None:
    catalog = connect(pg_url, "catalog")
    with catalog.cursor() as cursor:
        cursor.execute("CREATE TABLE products (id int primary key, price numeric(12,2))")
        cursor.execute("INSERT INTO products VALUES (1, 12.50)")
        cursor.execute("SELECT price FROM products")  # unqualified: its own schema is its search path
        assert [str(price) for (price,) in cursor.fetchall()] == ["12.50"]
        cursor.execute("GRANT SELECT ON products TO PUBLIC")  # even a careless grant does not open it
    catalog.close()

    orders = connect(pg_url, "orders")
    try:
        with orders.cursor() as cursor:
            cursor.execute("SHOW search_path")
            assert cursor.fetchone() == ("orders",)
            for statement in (
                "SELECT * FROM catalog.products",
                "UPDATE catalog.products SET price = 0",
                "CREATE TABLE catalog.sneaky (id int)",
                "CREATE TABLE public.shared (id int)",
            ):
                with pytest.raises(errors.InsufficientPrivilege):
                    cursor.execute(statement)
            cursor.execute("CREATE TABLE mine (id int)")
            cursor.execute("SELECT schemaname FROM pg_tables WHERE tablename = 'mine'")
            assert cursor.fetchone() == ("orders",)
    finally:
        orders.close()


def test_a_service_role_cannot_create_schemas_or_change_roles(pg_url: str) -> None:
    orders = connect(pg_url, "orders")
    try:
        with orders.cursor() as cursor:
            with pytest.raises(errors.InsufficientPrivilege):
                cursor.execute("CREATE SCHEMA elsewhere")
            with pytest.raises(errors.InsufficientPrivilege):
                cursor.execute("ALTER ROLE shop_catalog PASSWORD 'x'")
    finally:
        orders.close()
