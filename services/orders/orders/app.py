"""Wiring of the orders service: routes, event handlers, jobs, lifespan."""

from __future__ import annotations

from functools import partial
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp

from orders import api, service
from orders.domain import InvalidTransition
from orders.handlers import HANDLERS
from orders.settings import OrdersSettings
from shopkit.bus import Transport
from shopkit.http import ServiceClient
from shopkit.jobs import PeriodicJob
from shopkit.lifecycle import ServiceRuntime
from shopkit.problems import problem_response
from shopkit.webapp import create_service_app

MIGRATIONS = Path(__file__).parent / "migrations"


def create_app(
    settings: OrdersSettings | None = None,
    *,
    transport: Transport | None = None,
    catalog_app: ASGIApp | None = None,
) -> FastAPI:
    """catalog_app: the catalog's ASGI app, called in-process (all-in-one mode); else catalog_url."""
    settings = settings or OrdersSettings()
    runtime = ServiceRuntime("orders", settings, migrations=MIGRATIONS, handlers=HANDLERS, transport=transport)
    runtime.jobs.extend(
        [
            PeriodicJob(
                "orders-payment-timeout",
                settings.order_sweep_interval,
                partial(service.cancel_expired_orders, runtime.db, batch=settings.order_sweep_batch),
            ),
            PeriodicJob(
                "orders-saga-sweeper",
                settings.order_sweep_interval,
                partial(
                    service.redrive_stuck_orders,
                    runtime.db,
                    stuck_after=settings.order_stuck_after,
                    batch=settings.order_sweep_batch,
                ),
            ),
        ]
    )
    catalog = ServiceClient(
        settings.catalog_url,
        service_token=settings.internal_token,
        timeout=settings.upstream_timeout,
        asgi_app=catalog_app,
    )
    runtime.on_shutdown(catalog.close)
    app = create_service_app(runtime, title="Shop orders")
    app.state.catalog = catalog

    @app.exception_handler(InvalidTransition)
    async def _forbidden_transition(_request: Request, exc: InvalidTransition) -> JSONResponse:
        return problem_response(409, str(exc))

    app.include_router(api.router)
    return app
