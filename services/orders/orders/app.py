"""Wiring of the orders service: routes, event handlers, jobs, lifespan."""
from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from shopkit.bus import Transport
from shopkit.runtime import ServiceRuntime

from orders.settings import OrdersSettings

MIGRATIONS = Path(__file__).parent / "migrations"


def create_app(settings: OrdersSettings | None = None, *, transport: Transport | None = None) -> FastAPI:
    settings = settings or OrdersSettings()
    runtime = ServiceRuntime("orders", settings, migrations=MIGRATIONS, transport=transport)
    app = runtime.create_app(title="Shop orders")
    return app
