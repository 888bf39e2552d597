"""Wiring shared by every service: database and migrations, bus transport, outbox relay, event
consumer, periodic jobs, health, errors, request ids and token verification, behind one lifespan."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
from fastapi import FastAPI, Request
from prometheus_client import REGISTRY
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import text

from shopkit.auth import TokenVerifier, load_keys
from shopkit.bus import Transport
from shopkit.bus.inprocess import shared_inprocess_transport
from shopkit.bus.rabbitmq import RabbitMQTransport
from shopkit.consumer import EventDispatcher, Handlers
from shopkit.db import Database, UnitOfWork
from shopkit.jobs import PeriodicJob, run_periodically
from shopkit.migrate import upgrade
from shopkit.observability import add_request_context, configure_logging, health_router
from shopkit.outbox import OutboxRelay, backlog
from shopkit.problems import install_problem_handlers
from shopkit.settings import KitSettings

log = logging.getLogger("shopkit.runtime")


def make_transport(settings: KitSettings) -> Transport:
    if settings.amqp_url:
        return RabbitMQTransport(
            settings.amqp_url,
            prefetch=settings.amqp_prefetch,
            concurrency=settings.handler_concurrency,
            retry_delays=settings.retry_delays,
            exchange=f"{settings.bus_namespace}shop.events",
        )
    return shared_inprocess_transport(retry_delays=settings.retry_delays)


class ServiceRuntime:
    """Everything a service process runs besides its routes."""

    def __init__(
        self,
        name: str,
        settings: KitSettings,
        *,
        migrations: Path,
        handlers: Handlers | None = None,
        jobs: list[PeriodicJob] | None = None,
        transport: Transport | None = None,
        database_url: str | None = None,
    ) -> None:
        self.name = name
        self.settings = settings
        self.migrations = migrations
        self.db = Database(
            database_url or settings.service_database_url(name), service=name, pool_size=settings.db_pool_size
        )
        self.transport = transport or make_transport(settings)
        self.dispatcher = EventDispatcher(self.db, handlers or {})
        self.jobs = list(jobs or [])
        self.relay = OutboxRelay(
            self.db,
            self.transport,
            batch_size=settings.relay_batch_size,
            poll_interval=settings.relay_poll_interval,
            max_attempts=settings.outbox_max_attempts,
        )
        self.verifier = TokenVerifier(load_keys(settings), issuer=settings.jwt_issuer, audience=settings.jwt_audience)
        self._tasks: list[asyncio.Task[None]] = []
        self.dead_letters = 0
        self.started = False

    @property
    def queue(self) -> str:
        return f"{self.settings.bus_namespace}{self.name}"

    async def start_consuming(self) -> None:
        loop = asyncio.get_running_loop()
        if not getattr(loop, "_shop_executor", False):
            # The default executor (cpu+4 threads) would cap handlers and DB calls at 6 on 2 cores; far
            # more threads than connections only fight over the GIL and starve the event loop.
            workers = self.settings.handler_concurrency + 8
            loop.set_default_executor(ThreadPoolExecutor(max_workers=workers, thread_name_prefix="shop"))
            loop._shop_executor = True  # type: ignore[attr-defined]
            if not self.db.is_sqlite:
                # A process per service: route threads beyond its connection pool would only wait. (The
                # all-in-one process shares one threadpool among every service and keeps the default.)
                anyio.to_thread.current_default_thread_limiter().total_tokens = 2 * self.settings.db_pool_size
        await asyncio.to_thread(upgrade, self.db, self.migrations)
        await self.transport.connect()
        if self.dispatcher.event_types:
            await self.transport.subscribe(self.queue, self.dispatcher.event_types, self.dispatcher)

    async def start_publishing(self) -> None:
        await self.relay.start()
        self._tasks = [asyncio.create_task(run_periodically(job), name=job.name) for job in self.jobs]
        self._tasks.append(asyncio.create_task(self._watch_dead_letters(), name=f"{self.name}-dlq-watch"))
        self.started = True

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            # Bounded: a task stuck on a broker that is away must not hold the process up.
            _, stuck = await asyncio.wait(self._tasks, timeout=5)
            if stuck:
                log.warning("%d background tasks did not stop in time", len(stuck))
        try:
            await asyncio.wait_for(self.relay.stop(), timeout=10)
        except TimeoutError:
            log.warning("outbox relay did not stop in time")
        await self.transport.close()
        self.db.dispose()
        self.started = False

    async def _watch_dead_letters(self) -> None:
        while True:
            try:
                self.dead_letters = await self.transport.dead_letter_count(self.queue)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.debug("dead-letter count unavailable", exc_info=True)
            await asyncio.sleep(15)

    async def check_database(self) -> str | None:
        def ping() -> None:
            with self.db.engine.connect() as connection:
                connection.execute(text("SELECT 1"))

        await asyncio.to_thread(ping)
        return None

    async def check_broker(self) -> str | None:
        return None if self.transport.is_connected else "not connected to the message broker"

    @asynccontextmanager
    async def lifespan(self, _app: FastAPI) -> AsyncIterator[None]:
        await self.start_consuming()
        await self.start_publishing()
        try:
            yield
        finally:
            await self.stop()

    def create_app(self, *, title: str, description: str = "", **kwargs: Any) -> FastAPI:
        configure_logging(self.settings.log_level, self.settings.log_json)
        # FastAPI's built-in OpenTelemetry hooks look for a provider on every request; the shop exports
        # Prometheus metrics itself, so they stay off unless a caller passes its own telemetry config.
        kwargs.setdefault("telemetry", {"tracing": False, "metrics": False, "logs": False, "operation_spans": False})
        app = FastAPI(title=title, description=description, lifespan=self.lifespan, **kwargs)
        app.state.runtime = self
        app.state.settings = self.settings
        app.state.token_verifier = self.verifier
        install_problem_handlers(app)
        add_request_context(app, service=self.name, max_body_bytes=self.settings.max_body_bytes)
        app.include_router(health_router({"database": self.check_database, "broker": self.check_broker}))
        _register_backlog_metrics(self)
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


__all__ = ["ServiceRuntime", "UnitOfWork", "get_runtime", "get_uow"]


class _BacklogCollector(Collector):
    """Outbox backlog and dead letters of every runtime in this process (one in distributed mode, four
    in the all-in-one), read at scrape time so the numbers are never stale."""

    def __init__(self) -> None:
        self.runtimes: dict[str, ServiceRuntime] = {}

    def collect(self) -> Any:
        outbox_gauge = GaugeMetricFamily(
            "shop_outbox_messages", "Outbox rows not yet sent", labels=["service", "status"]
        )
        dlq = GaugeMetricFamily("shop_dead_letters", "Messages in the service's dead-letter queue", labels=["service"])
        for name, runtime in list(self.runtimes.items()):
            try:
                with runtime.db.engine.connect() as connection:
                    for status, count in backlog(connection).items():
                        outbox_gauge.add_metric([name, status], count)
            except Exception:
                log.debug("outbox backlog unavailable", exc_info=True)
            dlq.add_metric([name], runtime.dead_letters)
        yield outbox_gauge
        yield dlq


_collector = _BacklogCollector()
REGISTRY.register(_collector)


def _register_backlog_metrics(runtime: ServiceRuntime) -> None:
    _collector.runtimes[runtime.name] = runtime
