"""Wiring of the auth service: routes, event handlers, jobs, lifespan."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from functools import partial
from pathlib import Path

from fastapi import FastAPI

from auth import api, service
from auth.passwords import Passwords
from auth.service import Security
from auth.settings import AuthSettings
from auth.tokens import TokenIssuer
from shopkit.bus import Transport
from shopkit.lifecycle import ServiceRuntime
from shopkit.uow import UnitOfWork
from shopkit.webapp import create_service_app

MIGRATIONS = Path(__file__).parent / "migrations"

log = logging.getLogger("auth.app")


def create_app(settings: AuthSettings | None = None, *, transport: Transport | None = None) -> FastAPI:
    settings = settings or AuthSettings()
    runtime = ServiceRuntime("auth", settings, migrations=MIGRATIONS, transport=transport)
    security = Security(
        passwords=Passwords(),
        tokens=TokenIssuer(
            runtime.verifier.keys,
            issuer=settings.jwt_issuer,
            audience=settings.jwt_audience,
            ttl=timedelta(seconds=settings.access_token_ttl),
        ),
        refresh_ttl=timedelta(seconds=settings.refresh_token_ttl),
        max_login_failures=settings.login_max_failures,
        login_window=timedelta(seconds=settings.login_failure_window),
    )
    runtime.every(settings.prune_interval, "auth-prune", partial(_prune, security=security))
    if settings.admin_password:
        runtime.on_startup(partial(_ensure_admin, runtime, security.passwords, settings))
    app = create_service_app(runtime, title="Shop auth")
    app.state.security = security
    app.include_router(api.router)
    return app


async def _ensure_admin(runtime: ServiceRuntime, passwords: Passwords, settings: AuthSettings) -> None:
    def ensure() -> str:
        with runtime.uow() as uow:
            return service.ensure_admin(
                uow, passwords, email=settings.admin_email, password=settings.admin_password or ""
            )

    outcome = await asyncio.to_thread(ensure)
    log.info("admin ensured", extra={"email": settings.admin_email, "outcome": outcome})


def _prune(uow: UnitOfWork, *, security: Security) -> None:
    failures, tokens = service.prune_expired(uow, login_window=security.login_window)
    if failures or tokens:
        log.info("pruned expired auth records", extra={"login_failures": failures, "refresh_tokens": tokens})
