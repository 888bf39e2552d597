"""Wiring of the orders service: routes, event handlers, jobs, lifespan."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
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
from shopkit.problems import problem_response
from shopkit.runtime import ServiceRuntime

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
    app = runtime.create_app(title="Shop orders")
    catalog = ServiceClient(
        settings.catalog_url,
        service_token=settings.internal_token,
        timeout=settings.upstream_timeout,
        asgi_app=catalog_app,
    )
    app.state.catalog = catalog

    @asynccontextmanager
    async def lifespan(app_: FastAPI) -> AsyncIterator[None]:
        async with runtime.lifespan(app_):
            try:
                yield
            finally:
                await catalog.close()

    app.router.lifespan_context = lifespan

    @app.exception_handler(InvalidTransition)
    async def _forbidden_transition(_request: Request, exc: InvalidTransition) -> JSONResponse:
        return problem_response(409, str(exc))

    app.include_router(api.router)
    return app
