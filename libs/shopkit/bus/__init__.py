"""The message bus: one interface, two transports (RabbitMQ, in-process)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol

from contracts import Envelope

# Handles one delivered message; returns once its effects are committed. Raising means "not handled".
MessageHandler = Callable[[Envelope], Awaitable[None]]


class TransportUnavailable(Exception):
    """The broker cannot be reached now; try again later."""


class Transport(Protocol):
    async def connect(self) -> None: ...

    async def close(self) -> None: ...

    @property
    def is_connected(self) -> bool: ...

    async def publish(self, envelopes: list[Envelope]) -> dict[str, str]:
        """Publish and wait for the broker's confirms. Returns {event id: error} for the ones refused."""
        ...

    async def subscribe(self, queue: str, event_types: list[str], handler: MessageHandler) -> None:
        """Deliver events of these types to `handler`, retrying a bounded number of times with back-off
        and dead-lettering what keeps failing."""
        ...

    async def dead_letter_count(self, queue: str) -> int: ...

    async def replay_dead_letters(self, queue: str) -> int: ...
