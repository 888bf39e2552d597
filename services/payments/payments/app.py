"""Wiring of the payments service: providers, routes, event handlers, workers, jobs, lifespan."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from fastapi import FastAPI

from payments import api, audit
from payments.audit import ProviderLog
from payments.context import PaymentsContext
from payments.flows import bkash_flow, reconcile, stripe_webhooks
from payments.handlers import build_handlers
from payments.providers.bkash import BkashProvider
from payments.providers.registry import ProviderRegistry
from payments.providers.stripe import StripeProvider
from payments.settings import PaymentsSettings
from payments.workers import Workers
from shopkit.bus import Transport
from shopkit.jobs import PeriodicJob
from shopkit.lifecycle import ServiceRuntime
from shopkit.uow import UnitOfWork
from shopkit.webapp import create_service_app

MIGRATIONS = Path(__file__).parent / "migrations"
PRUNE_INTERVAL = 3600.0


def create_app(settings: PaymentsSettings | None = None, *, transport: Transport | None = None) -> FastAPI:
    settings = settings or PaymentsSettings()
    runtime = ServiceRuntime("payments", settings, migrations=MIGRATIONS, transport=transport)
    holder: list[ProviderRegistry] = []

    def secrets() -> tuple[str, ...]:
        live = holder[0].known_secrets() if holder else ()
        return (*settings.provider_secrets().values(), settings.sandbox_stripe_webhook_secret, *live)

    provider_log = ProviderLog(runtime.db, secrets)
    providers = ProviderRegistry(
        stripe=StripeProvider(settings, provider_log), bkash=BkashProvider(settings, provider_log)
    )
    holder.append(providers)
    backlog = stripe_webhooks.WebhookBacklog(runtime.db, settings.shed_webhook_backlog)
    context = PaymentsContext(runtime.db, settings, providers, provider_log, backlog)
    context.arrivals.listen(runtime.db.sessions)
    build_handlers(runtime.handlers, providers, context.arrivals)
    workers = Workers(context)
    retention = timedelta(days=settings.provider_log_retention_days)

    def prune(uow: UnitOfWork) -> None:
        audit.prune(uow.session, retention)
        stripe_webhooks.prune_processed(uow.session, retention)
        uow.commit()

    async def start_workers() -> None:
        workers.start()

    async def stop_workers() -> None:
        workers.stop()
        providers.close()

    runtime.on_startup(start_workers)
    runtime.on_shutdown(stop_workers)
    stuck = PeriodicJob(
        "payments-stuck-executions", settings.bkash_stuck_after / 2, lambda: bkash_flow.settle_stuck_executions(context)
    )
    runtime.jobs.append(stuck)
    reconciliation = PeriodicJob(
        "payments-reconciliation", settings.reconcile_interval, lambda: reconcile.run_pass(context)
    )
    runtime.jobs.append(reconciliation)
    runtime.every(PRUNE_INTERVAL, "payments-provider-log-pruning", prune)
    app = create_service_app(
        runtime, title="Shop payments", always_admitted=("/api/payments/webhooks/", "/api/payments/bkash/callback")
    )
    app.state.payments = context
    app.include_router(api.router)
    return app
