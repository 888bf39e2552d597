"""Wiring of the orders service: routes, event handlers, jobs, lifespan."""

from __future__ import annotations

from functools import partial
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp

from orders import api, service
from orders.catalog import CatalogLookup
from orders.domain import InvalidTransition
from orders.handlers import HANDLERS
from orders.settings import OrdersSettings
from shopkit.bus import Transport
from shopkit.http import ServiceClient
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
    service.ORDER_CHANGED.listen(runtime.db.sessions)
    batch = settings.order_sweep_batch
    runtime.every(
        settings.order_sweep_interval, "orders-payment-timeout", partial(service.cancel_expired_orders, batch=batch)
    )
    runtime.every(
        settings.order_sweep_interval,
        "orders-saga-sweeper",
        partial(service.redrive_stuck_orders, stuck_after=settings.order_stuck_after, batch=batch),
    )
    client = ServiceClient(
        settings.catalog_url,
        service_token=settings.internal_token,
        timeout=min(settings.upstream_timeout, settings.order_catalog_timeout),
        asgi_app=catalog_app,
    )
    runtime.on_shutdown(client.close)
    app = create_service_app(runtime, title="Shop orders")
    app.state.catalog = CatalogLookup(client, retry_after=settings.order_catalog_retry_after)

    @app.exception_handler(InvalidTransition)
    async def _forbidden_transition(_request: Request, exc: InvalidTransition) -> JSONResponse:
        return problem_response(409, str(exc))

    app.include_router(api.router)
    return app
