"""Wiring of the auth service: routes, event handlers, jobs, lifespan."""

from __future__ import annotations

import asyncio
import logging
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
from shopkit.lifecycle import ServiceRuntime
from shopkit.uow import UnitOfWork
from shopkit.webapp import create_service_app

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
    runtime.every(settings.prune_interval, "auth-prune", partial(_prune, security=security))
    if settings.admin_password:
        runtime.on_startup(partial(_ensure_admin, runtime, security.passwords, settings))
    runtime.on_startup(partial(_start_hashing, security))
    runtime.on_shutdown(partial(_stop_hashing, security))
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


async def _start_hashing(security: Security) -> None:
    security.hashing.start()  # here, in the event loop its line waits in


async def _stop_hashing(security: Security) -> None:
    security.hashing.stop()


def _prune(uow: UnitOfWork, *, security: Security) -> None:
    failures, tokens = service.prune_expired(uow, login_window=security.policy.window)
    if failures or tokens:
        log.info("pruned expired auth records", extra={"login_failures": failures, "refresh_tokens": tokens})
