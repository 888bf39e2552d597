"""The FastAPI app of a service: RFC 9457 problems for every error, request ids and limits, health and
metrics routes, the runtime's lifespan; and the dependencies routes use (`get_uow`, `get_runtime`)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, Request

from shopkit import openapi, tracing
from shopkit.lifecycle import ServiceRuntime
from shopkit.metrics import watch_runtime
from shopkit.observability import add_request_context, configure_logging, health_router
from shopkit.problems import install_problem_handlers
from shopkit.uow import UnitOfWork


def create_service_app(
    runtime: ServiceRuntime,
    *,
    title: str,
    description: str = "",
    always_admitted: tuple[str, ...] = (),
    **kwargs: Any,
) -> FastAPI:
    """`always_admitted`: path prefixes answered however busy the service is (a provider's webhooks:
    cheap to take, and what lets the work already accepted finish)."""
    settings = runtime.settings
    configure_logging(settings.log_level, settings.log_json)
    tracing.configure(runtime.name)
    # FastAPI's built-in OpenTelemetry hooks look for a provider on every request; tracing is the kit's
    # (shopkit.tracing), so they stay off unless a caller passes its own telemetry config.
    kwargs.setdefault("telemetry", {"tracing": False, "metrics": False, "logs": False, "operation_spans": False})
    kwargs.setdefault("generate_unique_id_function", openapi.operation_id(runtime.name))
    app = FastAPI(title=title, description=description, lifespan=runtime.lifespan, **kwargs)
    openapi.install(app, runtime.name)
    app.state.runtime = runtime
    app.state.settings = settings
    app.state.token_verifier = runtime.verifier
    install_problem_handlers(app)
    add_request_context(
        app,
        service=runtime.name,
        max_body_bytes=settings.max_body_bytes,
        max_in_flight=settings.max_in_flight,
        max_waiting=settings.max_waiting,
        always_admitted=always_admitted,
    )
    app.include_router(health_router({"database": runtime.check_database, "broker": runtime.check_broker}))
    watch_runtime(runtime)
    return app


def get_runtime(request: Request) -> ServiceRuntime:
    runtime: ServiceRuntime = request.app.state.runtime
    return runtime


async def get_uow(request: Request) -> AsyncIterator[UnitOfWork]:
    """FastAPI dependency: a unit of work for this request (use with `Depends`).

    Async on purpose: a sync generator dependency costs two thread hops per request. The session
    connects lazily in the route's thread; closing it is I/O (a rollback) only if a transaction is
    still open, and only then is it sent to the database's own closing threads (see Database.closer)."""
    db = get_runtime(request).db
    session = db.sessions()
    uow = UnitOfWork(session, producer=db.service, after_commit=db.outbox_written)
    try:
        yield uow
    finally:
        if session.in_transaction():
            await asyncio.get_running_loop().run_in_executor(db.closer, session.close)
        else:
            session.close()


# Every route with a unit of work can meet a database that is busy or down (503, see shopkit.problems).
openapi.depends_on(get_uow, 503)
