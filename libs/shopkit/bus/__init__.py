"""The message bus: one interface, two transports (RabbitMQ, in-process)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from contracts import Envelope

# Handles a batch of delivered messages. Returns, per message, None once its effects are committed, or
# the error that kept it from being handled: that message alone is then retried, and in the end
# dead-lettered.
BatchHandler = Callable[[Sequence[Envelope]], Awaitable[list[BaseException | None]]]
# Keeps a message that kept failing, durably, where the transport has no dead-letter queue of its own.
DeadLetterSink = Callable[[Envelope, str], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Outgoing:
    """An event as the outbox keeps it: its id, its type (the routing key) and the envelope's JSON, which
    goes on the wire as it is (no model built, no second encoding)."""

    id: str
    type: str
    body: bytes

    @classmethod
    def of(cls, envelope: Envelope) -> Outgoing:
        return cls(str(envelope.id), envelope.type, envelope.model_dump_json().encode())


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

    async def publish_raw(self, messages: Sequence[Outgoing]) -> dict[str, str]:
        """The same, for events already encoded (the outbox relay's)."""
        ...

    async def subscribe(
        self,
        queue: str,
        event_types: list[str],
        handler: BatchHandler,
        *,
        dead_letters: DeadLetterSink | None = None,
    ) -> None:
        """Deliver events of these types to `handler` in batches of what has arrived, retrying a failed
        message a bounded number of times with back-off and dead-lettering what keeps failing."""
        ...

    async def dead_letter_count(self, queue: str) -> int: ...

    async def replay_dead_letters(self, queue: str) -> int: ...
