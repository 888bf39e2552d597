"""Wiring of the auth service: routes, event handlers, jobs, lifespan."""
from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from shopkit.bus import Transport
from shopkit.runtime import ServiceRuntime

from auth.settings import AuthSettings

MIGRATIONS = Path(__file__).parent / "migrations"


def create_app(settings: AuthSettings | None = None, *, transport: Transport | None = None) -> FastAPI:
    settings = settings or AuthSettings()
    runtime = ServiceRuntime("auth", settings, migrations=MIGRATIONS, transport=transport)
    app = runtime.create_app(title="Shop auth")
    return app
