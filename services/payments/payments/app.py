"""Wiring of the payments service: routes, event handlers, jobs, lifespan."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from payments import api
from payments.audit import ProviderLogger
from payments.bkash_adapter import BkashGateway
from payments.handlers import register_handlers
from payments.service import PaymentService
from payments.settings import PaymentsSettings
from payments.stripe_adapter import StripeGateway
from shopkit.bus import Transport
from shopkit.jobs import PeriodicJob
from shopkit.lifecycle import ServiceRuntime
from shopkit.webapp import create_service_app

MIGRATIONS = Path(__file__).parent / "migrations"


def create_app(settings: PaymentsSettings | None = None, *, transport: Transport | None = None) -> FastAPI:
    settings = settings or PaymentsSettings()
    bkash_holder: list[BkashGateway] = []

    def secrets() -> tuple[str, ...]:
        live = bkash_holder[0].known_tokens() if bkash_holder else ()
        return (*settings.provider_secrets().values(), *live)

    runtime = ServiceRuntime("payments", settings, migrations=MIGRATIONS, transport=transport)
    logger = ProviderLogger(runtime.db, secrets)
    bkash = BkashGateway(settings, logger)
    bkash_holder.append(bkash)
    service = PaymentService(runtime.db, settings, StripeGateway(settings, logger), bkash, logger)
    register_handlers(runtime.handlers, service)
    runtime.jobs.append(PeriodicJob("payments-sweeper", settings.sweep_interval, service.sweep))
    app = create_service_app(runtime, title="Shop payments")
    app.state.payments = service
    app.include_router(api.router)
    return app
