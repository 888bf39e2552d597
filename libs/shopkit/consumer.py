"""Dispatches delivered events to a service's handlers, each in its own unit of work with its inbox
record. Handlers are plain functions `(event_data, uow) -> None` and never commit themselves."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from contracts import EVENT_TYPES, Envelope, EventData
from shopkit.db import Database, UnitOfWork
from shopkit.inbox import record_once

log = logging.getLogger("shopkit.consumer")

Handler = Callable[[Any, UnitOfWork], None]
Handlers = Mapping[type[EventData], Sequence[Handler]]


class EventDispatcher:
    def __init__(self, db: Database, handlers: Handlers) -> None:
        self.db = db
        self.handlers = {event.TYPE: (event, list(fns)) for event, fns in handlers.items()}

    @property
    def event_types(self) -> list[str]:
        return sorted(self.handlers)

    async def __call__(self, envelope: Envelope) -> None:
        await asyncio.to_thread(self.handle, envelope)

    def handle(self, envelope: Envelope) -> None:
        """Run every handler of this event type, each at most once per event id."""
        entry = self.handlers.get(envelope.type)
        if entry is None:
            return
        model, fns = entry
        if model is not EVENT_TYPES.get(envelope.type):
            raise ValueError(f"unknown event type {envelope.type}")
        data = model.model_validate(envelope.data)
        for fn in fns:
            name = f"{fn.__module__}.{fn.__name__}"
            with self.db.unit_of_work(causation=envelope) as uow:
                if not record_once(uow.session, envelope.id, envelope.type, name):
                    log.info("duplicate event skipped", extra={"event_id": str(envelope.id), "handler": name})
                    continue
                fn(data, uow)
                uow.commit()
