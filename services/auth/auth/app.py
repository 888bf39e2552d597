"""Wiring of the auth service: routes, event handlers, jobs, lifespan."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import timedelta
from functools import partial
from pathlib import Path

from fastapi import FastAPI

from auth import api, service
from auth.domain import LoginPolicy
from auth.passwords import HashingQueue, Passwords, return_hash_memory_promptly
from auth.service import Security
from auth.settings import AuthSettings
from auth.tokens import TokenIssuer
from shopkit.bus import Transport
from shopkit.jobs import PeriodicJob
from shopkit.runtime import ServiceRuntime

MIGRATIONS = Path(__file__).parent / "migrations"

log = logging.getLogger("auth.app")


def create_app(settings: AuthSettings | None = None, *, transport: Transport | None = None) -> FastAPI:
    settings = settings or AuthSettings()
    return_hash_memory_promptly()
    runtime = ServiceRuntime("auth", settings, migrations=MIGRATIONS, transport=transport)
    passwords = Passwords()
    security = Security(
        passwords=passwords,
        hashing=HashingQueue(
            slots=settings.password_hash_concurrency,
            max_waiting=settings.password_hash_queue,
            max_wait=settings.password_hash_max_wait,
            seconds_per_hash=passwords.seconds_per_hash,
        ),
        # Two short transactions per login, a few milliseconds each, keep up with a hash of ~50 ms per
        # slot many times over; more at once would only take connections from the other routes.
        database_turns=asyncio.Semaphore(2 * settings.password_hash_concurrency),
        tokens=TokenIssuer(
            runtime.verifier.keys,
            issuer=settings.jwt_issuer,
            audience=settings.jwt_audience,
            ttl=timedelta(seconds=settings.access_token_ttl),
        ),
        refresh_ttl=timedelta(seconds=settings.refresh_token_ttl),
        policy=LoginPolicy(
            max_failures=settings.login_max_failures,
            window=timedelta(seconds=settings.login_failure_window),
            slowdown_step=settings.login_slowdown_step,
            slowdown_max=settings.login_slowdown_max,
        ),
    )
    runtime.jobs.append(PeriodicJob("auth-prune", settings.prune_interval, partial(_prune, runtime, security)))
    app = runtime.create_app(title="Shop auth")
    app.state.security = security
    # The runtime's lifespan migrates the schema; the admin can only be ensured after that.
    app.router.lifespan_context = _lifespan(runtime, security, settings)
    app.include_router(api.router)
    return app


def _lifespan(
    runtime: ServiceRuntime, security: Security, settings: AuthSettings
) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with runtime.lifespan(app):
            if settings.admin_password:
                await asyncio.to_thread(_ensure_admin, runtime, security.passwords, settings)
            security.hashing.start()
            try:
                yield
            finally:
                security.hashing.stop()

    return lifespan


def _ensure_admin(runtime: ServiceRuntime, passwords: Passwords, settings: AuthSettings) -> None:
    with runtime.db.unit_of_work() as uow:
        outcome = service.ensure_admin(uow, passwords, email=settings.admin_email, password=settings.admin_password)
    log.info("admin ensured", extra={"email": settings.admin_email, "outcome": outcome})


def _prune(runtime: ServiceRuntime, security: Security) -> None:
    with runtime.db.unit_of_work() as uow:
        failures, tokens = service.prune_expired(uow, login_window=security.policy.window)
    if failures or tokens:
        log.info("pruned expired auth records", extra={"login_failures": failures, "refresh_tokens": tokens})
