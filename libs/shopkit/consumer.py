"""Which function handles which event (a typed registry, each handler under a stable name), and the
dispatcher that applies a batch of delivered events in one unit of work with their inbox records.

Handlers are plain functions `(event, uow) -> None`, or `(events, uow) -> None` for a batch handler,
and never commit: the dispatcher commits the whole batch, then the transport acks it. When anything in
a batch fails, the batch is rolled back and its events are applied again one by one, each in its own
transaction, so one poison message neither holds the others back nor loses its own retries."""

from __future__ import annotations

import asyncio
import logging
import re
import uuid
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, TypeVar

from contracts import EVENT_TYPES, Envelope, EventData
from shopkit import tracing
from shopkit.db import Database
from shopkit.inbox import record_new_handled
from shopkit.uow import UnitOfWork, unit_of_work

log = logging.getLogger("shopkit.consumer")

E = TypeVar("E", bound=EventData)
Outcome = BaseException | None

_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,99}$")


@dataclass(frozen=True)
class Registration:
    name: str
    event: type[EventData]
    fn: Callable[[Any, UnitOfWork], None]
    batch: bool


class EventHandlers:
    """The events a service consumes and the handler of each. The name is what the inbox records: it
    must stay the same for as long as events handled under it can be redelivered, wherever the
    function moves."""

    def __init__(self) -> None:
        self._registrations: list[Registration] = []

    def add(self, event: type[E], fn: Callable[[E, UnitOfWork], None], *, name: str) -> None:
        self._register(Registration(name, event, fn, batch=False))

    def add_batch(self, event: type[E], fn: Callable[[Sequence[E], UnitOfWork], None], *, name: str) -> None:
        """`fn` gets every new event of this type in a delivered batch at once, in arrival order."""
        self._register(Registration(name, event, fn, batch=True))

    def _register(self, registration: Registration) -> None:
        if not _NAME.match(registration.name):
            raise ValueError(f"bad handler name {registration.name!r}: lower case, digits, '.', '_', '-'")
        if any(r.name == registration.name for r in self._registrations):
            raise ValueError(f"two handlers are named {registration.name!r}")
        if EVENT_TYPES.get(registration.event.TYPE) is not registration.event:
            raise ValueError(f"{registration.event.__name__} is not an event of libs/contracts")
        self._registrations.append(registration)

    @property
    def event_types(self) -> list[str]:
        return sorted({r.event.TYPE for r in self._registrations})

    def of_type(self, event_type: str) -> list[Registration]:
        return [r for r in self._registrations if r.event.TYPE == event_type]

    def __iter__(self) -> Any:
        return iter(self._registrations)


@dataclass(frozen=True)
class _Delivery:
    index: int
    envelope: Envelope
    data: EventData


class EventDispatcher:
    def __init__(self, db: Database, handlers: EventHandlers) -> None:
        self.db = db
        self.handlers = handlers

    @property
    def event_types(self) -> list[str]:
        return self.handlers.event_types

    async def __call__(self, envelopes: Sequence[Envelope]) -> list[Outcome]:
        return await asyncio.to_thread(self.handle_batch, envelopes)

    def handle(self, envelope: Envelope) -> None:
        """One event on its own; raises what its handler raised."""
        outcome = self.handle_batch([envelope])[0]
        if outcome is not None:
            raise outcome

    def handle_batch(self, envelopes: Sequence[Envelope]) -> list[Outcome]:
        """Apply the batch; per envelope None once its effects are committed, or what went wrong."""
        outcomes: list[Outcome] = [None] * len(envelopes)
        deliveries = self._parse(envelopes, outcomes)
        if not deliveries:
            return outcomes
        try:
            self._apply(deliveries)
        except Exception as exc:
            if len(deliveries) == 1:
                outcomes[deliveries[0].index] = exc
                return outcomes
            log.warning("a batch failed; applying its events one by one", extra={"size": len(deliveries)})
            for delivery in deliveries:
                outcomes[delivery.index] = self._apply_alone(delivery)
        return outcomes

    def _parse(self, envelopes: Sequence[Envelope], outcomes: list[Outcome]) -> list[_Delivery]:
        deliveries: list[_Delivery] = []
        seen: set[uuid.UUID] = set()
        for index, envelope in enumerate(envelopes):
            registrations = self.handlers.of_type(envelope.type)
            if not registrations or envelope.id in seen:
                continue  # not ours, or the same event twice in one batch: once is enough
            seen.add(envelope.id)
            try:
                data = registrations[0].event.model_validate(envelope.data)
            except ValueError as exc:
                outcomes[index] = exc
                continue
            deliveries.append(_Delivery(index, envelope, data))
        return deliveries

    def _apply_alone(self, delivery: _Delivery) -> Outcome:
        try:
            self._apply([delivery])
        except Exception as exc:
            return exc
        return None

    def _apply(self, deliveries: list[_Delivery]) -> None:
        with unit_of_work(self.db) as uow:
            fresh = self._record_inbox(uow, deliveries)
            # One aggregate's events keep their order; across aggregates, rows are locked in one order
            # (by correlation id) so that two batches applied at once cannot deadlock each other.
            for delivery in sorted(deliveries, key=lambda d: d.envelope.correlation_id or ""):
                for registration in self.handlers.of_type(delivery.envelope.type):
                    if not registration.batch and (registration.name, delivery.envelope.id) in fresh:
                        uow.causation = delivery.envelope
                        with self._consuming(delivery.envelope, registration.name):
                            registration.fn(delivery.data, uow)
            uow.causation = None
            for registration in self.handlers:
                if registration.batch:
                    batch = [
                        d
                        for d in deliveries
                        if d.envelope.type == registration.event.TYPE and (registration.name, d.envelope.id) in fresh
                    ]
                    if batch:
                        uow.causations = {id(d.data): self._traced(d.envelope, registration.name) for d in batch}
                        registration.fn([d.data for d in batch], uow)
            uow.causations = {}
            uow.commit()

    def _consuming(self, envelope: Envelope, handler: str) -> AbstractContextManager[str]:
        return tracing.span(
            f"consume {envelope.type}",
            service=self.db.service,
            parent=envelope.traceparent,
            kind=tracing.CONSUMER,
            attributes={"shop.handler": handler, "shop.event_id": str(envelope.id)},
        )

    def _traced(self, envelope: Envelope, handler: str) -> Envelope:
        """The envelope as its batch handler's answers should see it: caused within this service's span."""
        with self._consuming(envelope, handler) as traceparent:
            return envelope.model_copy(update={"traceparent": traceparent})

    def _record_inbox(self, uow: UnitOfWork, deliveries: list[_Delivery]) -> set[tuple[str, uuid.UUID]]:
        """One inbox statement for the batch, whatever handlers its events go to."""
        handled = [
            (registration.name, d.envelope.id, d.envelope.type)
            for registration in self.handlers
            for d in deliveries
            if d.envelope.type == registration.event.TYPE
        ]
        fresh = record_new_handled(uow.session, handled)
        if len(fresh) < len(handled):
            skipped = sorted({handler for handler, event_id, _ in handled if (handler, event_id) not in fresh})
            log.info("duplicate events skipped", extra={"handlers": skipped, "count": len(handled) - len(fresh)})
        return fresh
