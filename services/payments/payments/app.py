"""Wiring of the payments service: routes, event handlers, jobs, lifespan."""
from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from shopkit.bus import Transport
from shopkit.runtime import ServiceRuntime

from payments.settings import PaymentsSettings

MIGRATIONS = Path(__file__).parent / "migrations"


def create_app(settings: PaymentsSettings | None = None, *, transport: Transport | None = None) -> FastAPI:
    settings = settings or PaymentsSettings()
    runtime = ServiceRuntime("payments", settings, migrations=MIGRATIONS, transport=transport)
    app = runtime.create_app(title="Shop payments")
    return app
