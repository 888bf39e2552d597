"""In-process transport for the all-in-one mode. Same semantics as RabbitMQ where they matter to the
services: topic routing by event type, a queue per service, bounded retries with back-off, a
dead-letter list; publishing returns once every subscriber's queue holds the message."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from contracts import Envelope
from shopkit.bus import MessageHandler

log = logging.getLogger("shopkit.bus.inprocess")


@dataclass
class _Queue:
    name: str
    event_types: set[str]
    handler: MessageHandler
    pending: asyncio.Queue[tuple[Envelope, int]] = field(default_factory=asyncio.Queue)
    dead: list[Envelope] = field(default_factory=list)
    workers: list[asyncio.Task[None]] = field(default_factory=list)


class InProcessTransport:
    def __init__(self, *, retry_delays: list[float] | None = None, concurrency: int = 8) -> None:
        self.retry_delays = retry_delays if retry_delays is not None else [0.5, 2.0, 8.0]
        self.concurrency = concurrency
        self._queues: dict[str, _Queue] = {}
        self._connections = 0
        self._released: asyncio.Event | None = None

    def hold(self) -> None:
        """Hold publishing until release(): the all-in-one process subscribes every service before
        any relay may deliver, or an event for a not-yet-subscribed service would be dropped."""
        self._released = asyncio.Event()

    def release(self) -> None:
        if self._released is not None:
            self._released.set()

    async def connect(self) -> None:
        self._connections += 1

    async def close(self) -> None:
        self._connections = max(0, self._connections - 1)
        if self._connections == 0:
            for queue in self._queues.values():
                for task in queue.workers:
                    task.cancel()
            self._queues.clear()

    @property
    def is_connected(self) -> bool:
        return self._connections > 0

    async def publish(self, envelopes: list[Envelope]) -> dict[str, str]:
        if self._released is not None:
            await self._released.wait()
        for envelope in envelopes:
            for queue in self._queues.values():
                if envelope.type in queue.event_types:
                    queue.pending.put_nowait((envelope, 0))
        return {}

    async def subscribe(self, queue: str, event_types: list[str], handler: MessageHandler) -> None:
        q = _Queue(queue, set(event_types), handler)
        self._queues[queue] = q
        q.workers = [asyncio.create_task(self._work(q), name=f"inprocess-{queue}-{i}") for i in range(self.concurrency)]

    async def _work(self, queue: _Queue) -> None:
        while True:
            envelope, attempt = await queue.pending.get()
            try:
                await queue.handler(envelope)
            except asyncio.CancelledError:
                raise
            except Exception:
                if attempt < len(self.retry_delays):
                    log.warning("handler failed, retrying", exc_info=True, extra={"event_id": str(envelope.id)})
                    loop = asyncio.get_running_loop()
                    loop.call_later(self.retry_delays[attempt], queue.pending.put_nowait, (envelope, attempt + 1))
                else:
                    log.error("handler keeps failing, dead-lettered", extra={"event_id": str(envelope.id)})
                    queue.dead.append(envelope)

    async def dead_letter_count(self, queue: str) -> int:
        q = self._queues.get(queue)
        return len(q.dead) if q else 0

    async def replay_dead_letters(self, queue: str) -> int:
        q = self._queues.get(queue)
        if not q:
            return 0
        dead, q.dead = q.dead, []
        for envelope in dead:
            q.pending.put_nowait((envelope, 0))
        return len(dead)


_shared: InProcessTransport | None = None


def shared_inprocess_transport(**kwargs: object) -> InProcessTransport:
    """The one bus of this process: every service of the all-in-one mode publishes and consumes on it."""
    global _shared
    if _shared is None:
        _shared = InProcessTransport(**kwargs)  # type: ignore[arg-type]
    return _shared
