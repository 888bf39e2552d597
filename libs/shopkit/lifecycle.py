"""A service process's life: its database and migrations, its bus transport and consumer, its outbox
relay, its periodic jobs; started and stopped in one order, with hooks for what a service adds."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import anyio
from sqlalchemy import text

from contracts import Envelope
from shopkit import deadletters
from shopkit.auth import TokenVerifier, load_keys
from shopkit.bus import Transport
from shopkit.bus.inprocess import shared_inprocess_transport
from shopkit.bus.rabbitmq import RabbitMQTransport
from shopkit.consumer import EventDispatcher, EventHandlers
from shopkit.db import Database
from shopkit.inbox import prune_handled
from shopkit.jobs import PeriodicJob, run_periodically
from shopkit.migrate import upgrade
from shopkit.outbox import prune_sent
from shopkit.relay import OutboxRelay
from shopkit.settings import KitSettings
from shopkit.uow import UnitOfWork, unit_of_work

log = logging.getLogger("shopkit.lifecycle")

Hook = Callable[[], Awaitable[None]]
HOUSEKEEPING_INTERVAL = 600.0
DEAD_LETTER_WATCH_INTERVAL = 15.0


def make_transport(settings: KitSettings) -> Transport:
    if settings.amqp_url:
        return RabbitMQTransport(
            settings.amqp_url,
            prefetch=settings.amqp_prefetch,
            workers=settings.consumer_workers,
            batch_size=settings.consumer_batch_size,
            retry_delays=settings.retry_delays,
            exchange=f"{settings.bus_namespace}shop.events",
        )
    return shared_inprocess_transport(
        retry_delays=settings.retry_delays, workers=settings.consumer_workers, batch_size=settings.consumer_batch_size
    )


class ServiceRuntime:
    """Everything a service process runs besides its routes. A service adds its handlers, jobs and
    start-up/shutdown hooks before the process starts; `lifespan` runs them all."""

    def __init__(
        self,
        name: str,
        settings: KitSettings,
        *,
        migrations: Path,
        handlers: EventHandlers | None = None,
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
        self.handlers = handlers if handlers is not None else EventHandlers()
        self.dispatcher = EventDispatcher(self.db, self.handlers)
        self.jobs: list[PeriodicJob] = [
            PeriodicJob(f"{name}-housekeeping", HOUSEKEEPING_INTERVAL, self._housekeeping),
        ]
        self.relay = OutboxRelay(
            self.db,
            self.transport,
            batch_size=settings.relay_batch_size,
            poll_interval=settings.relay_poll_interval,
            max_attempts=settings.outbox_max_attempts,
            linger=settings.relay_linger,
        )
        self.verifier = TokenVerifier(load_keys(settings), issuer=settings.jwt_issuer, audience=settings.jwt_audience)
        self._startup: list[Hook] = []
        self._shutdown: list[Hook] = []
        self._tasks: list[asyncio.Task[None]] = []
        self.dead_letters = 0
        self.started = False

    @property
    def queue(self) -> str:
        return f"{self.settings.bus_namespace}{self.name}"

    def uow(self, causation: Envelope | None = None, *, read_only: bool = False) -> AbstractContextManager[UnitOfWork]:
        return unit_of_work(self.db, causation, read_only=read_only)

    def every(self, seconds: float, name: str, use_case: Callable[[UnitOfWork], object]) -> None:
        """A periodic job that is a use case: it gets a fresh unit of work each time (and commits it)."""

        def run() -> None:
            with self.uow() as uow:
                use_case(uow)

        self.jobs.append(PeriodicJob(name, seconds, run))

    def on_startup(self, hook: Hook) -> None:
        """Runs once the schema is migrated and the bus connected, before events flow."""
        self._startup.append(hook)

    def on_shutdown(self, hook: Hook) -> None:
        """Runs while the database and the bus are still there, in reverse order of registration."""
        self._shutdown.append(hook)

    async def start(self) -> None:
        self._bound_threads()
        await asyncio.to_thread(upgrade, self.db, self.migrations)
        await self.transport.connect()
        for hook in self._startup:
            await hook()
        if self.dispatcher.event_types:
            await self.transport.subscribe(
                self.queue, self.dispatcher.event_types, self.dispatcher, dead_letters=self._keep_dead_letter
            )
        await self.relay.start()
        self._tasks = [asyncio.create_task(run_periodically(job), name=job.name) for job in self.jobs]
        self._tasks.append(asyncio.create_task(self._watch_dead_letters(), name=f"{self.name}-dead-letters"))
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
        for hook in reversed(self._shutdown):
            try:
                await hook()
            except Exception:
                log.exception("a shutdown hook failed")
        await self.transport.close()
        self.db.dispose()
        self.started = False

    @asynccontextmanager
    async def lifespan(self, _app: Any = None) -> AsyncIterator[None]:
        await self.start()
        try:
            yield
        finally:
            await self.stop()

    def _bound_threads(self) -> None:
        loop = asyncio.get_running_loop()
        if getattr(loop, "_shop_executor", False):
            return
        # The default executor (cpu+4 threads) would cap handlers and DB calls at 6 on 2 cores; far more
        # threads than connections only fight over the GIL and starve the event loop.
        loop.set_default_executor(
            ThreadPoolExecutor(max_workers=self.settings.db_pool_size + 8, thread_name_prefix="shop")
        )
        loop._shop_executor = True  # type: ignore[attr-defined]
        if not self.db.is_sqlite:
            # A process per service: route threads beyond its connection pool would only wait. (The
            # all-in-one process shares one threadpool among every service and keeps the default.)
            anyio.to_thread.current_default_thread_limiter().total_tokens = 2 * self.settings.db_pool_size

    async def _keep_dead_letter(self, envelope: Envelope, error: str) -> None:
        def keep() -> None:
            with self.db.engine.begin() as connection:
                deadletters.record_dead_letter(connection, envelope, error)

        await asyncio.to_thread(keep)

    async def _watch_dead_letters(self) -> None:
        while True:
            try:
                await self._replay_requested_dead_letters()
                kept = await asyncio.to_thread(self._count_kept_dead_letters)
                self.dead_letters = kept + await self.transport.dead_letter_count(self.queue)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.debug("dead letters unavailable", exc_info=True)
            await asyncio.sleep(DEAD_LETTER_WATCH_INTERVAL)

    def _count_kept_dead_letters(self) -> int:
        with self.db.engine.connect() as connection:
            return deadletters.count(connection)

    async def _replay_requested_dead_letters(self) -> None:
        def take() -> list[Envelope]:
            with self.db.engine.begin() as connection:
                return deadletters.take_replay_requests(connection)

        envelopes = await asyncio.to_thread(take)
        if not envelopes:
            return
        outcomes = await self.dispatcher(envelopes)
        for envelope, outcome in zip(envelopes, outcomes, strict=True):
            if outcome is not None:
                await self._keep_dead_letter(envelope, repr(outcome))
        log.info("replayed dead letters", extra={"count": len(envelopes)})

    def _housekeeping(self) -> None:
        with self.db.engine.begin() as connection:
            sent = prune_sent(connection, older_than=timedelta(hours=self.settings.outbox_retention_hours))
            handled = prune_handled(connection, older_than=timedelta(days=self.settings.inbox_retention_days))
        if sent or handled:
            log.info("pruned kit tables", extra={"outbox_sent": sent, "inbox": handled})

    async def check_database(self) -> str | None:
        def ping() -> None:
            with self.db.engine.connect() as connection:
                connection.execute(text("SELECT 1"))

        await asyncio.to_thread(ping)
        return None

    async def check_broker(self) -> str | None:
        return None if self.transport.is_connected else "not connected to the message broker"
