"""Wiring of the catalog service: routes, event handlers, jobs, lifespan."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from catalog import api
from catalog.handlers import HANDLERS
from catalog.settings import CatalogSettings
from shopkit.bus import Transport
from shopkit.lifecycle import ServiceRuntime
from shopkit.webapp import create_service_app

MIGRATIONS = Path(__file__).parent / "migrations"


def create_app(settings: CatalogSettings | None = None, *, transport: Transport | None = None) -> FastAPI:
    settings = settings or CatalogSettings()
    runtime = ServiceRuntime("catalog", settings, migrations=MIGRATIONS, handlers=HANDLERS, transport=transport)
    app = create_service_app(runtime, title="Shop catalog")
    app.include_router(api.router)
    app.include_router(api.categories)
    app.include_router(api.internal)
    return app
