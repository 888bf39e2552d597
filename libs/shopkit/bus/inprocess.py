"""In-process transport for the all-in-one mode. Same semantics as RabbitMQ where they matter to the
services: topic routing by event type, a queue per service, batches of what has arrived, bounded retries
with back-off, dead letters. And the same guarantee across a crash: `publish` returns only once every
subscriber has committed the message's effects (or durably dead-lettered it), so the relay marks an
outbox row sent only then; a process killed meanwhile publishes the row again at its next start, and
the consumers' inbox skips what they had already applied."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

from contracts import Envelope
from shopkit.bus import BatchHandler, DeadLetterSink, Outgoing

log = logging.getLogger("shopkit.bus.inprocess")


@dataclass(eq=False)
class _Delivery:
    envelope: Envelope
    done: asyncio.Future[None]
    attempt: int = 0


@dataclass
class _Queue:
    name: str
    event_types: set[str]
    handler: BatchHandler
    dead_letters: DeadLetterSink | None
    pending: asyncio.Queue[_Delivery] = field(default_factory=asyncio.Queue)
    # Only without a sink (tests of the transport itself): dead letters are then kept in memory.
    dead: list[Envelope] = field(default_factory=list)
    workers: list[asyncio.Task[None]] = field(default_factory=list)


class InProcessTransport:
    def __init__(self, *, retry_delays: list[float] | None = None, workers: int = 2, batch_size: int = 100) -> None:
        self.retry_delays = retry_delays if retry_delays is not None else [0.5, 2.0, 8.0]
        self.workers = workers
        self.batch_size = batch_size
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

    async def publish_raw(self, messages: Sequence[Outgoing]) -> dict[str, str]:
        return await self.publish([Envelope.model_validate_json(message.body) for message in messages])

    async def publish(self, envelopes: list[Envelope]) -> dict[str, str]:
        if self._released is not None:
            await self._released.wait()
        loop = asyncio.get_running_loop()
        waiting: list[asyncio.Future[None]] = []
        for envelope in envelopes:
            for queue in self._queues.values():
                if envelope.type in queue.event_types:
                    delivery = _Delivery(envelope, loop.create_future())
                    queue.pending.put_nowait(delivery)
                    waiting.append(delivery.done)
        if waiting:
            await asyncio.gather(*waiting)
        return {}

    async def subscribe(
        self,
        queue: str,
        event_types: list[str],
        handler: BatchHandler,
        *,
        dead_letters: DeadLetterSink | None = None,
    ) -> None:
        q = _Queue(queue, set(event_types), handler, dead_letters)
        self._queues[queue] = q
        q.workers = [asyncio.create_task(self._work(q), name=f"inprocess-{queue}-{i}") for i in range(self.workers)]

    async def _work(self, queue: _Queue) -> None:
        while True:
            batch = [await queue.pending.get()]
            while len(batch) < self.batch_size and not queue.pending.empty():
                batch.append(queue.pending.get_nowait())
            try:
                outcomes = await queue.handler([delivery.envelope for delivery in batch])
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                outcomes = [exc] * len(batch)
            for delivery, outcome in zip(batch, outcomes, strict=True):
                if outcome is None:
                    _resolve(delivery)
                else:
                    await self._failed(queue, delivery, outcome)

    async def _failed(self, queue: _Queue, delivery: _Delivery, error: BaseException) -> None:
        loop = asyncio.get_running_loop()
        if delivery.attempt < len(self.retry_delays):
            log.warning("handler failed, retrying", exc_info=error, extra={"event_id": str(delivery.envelope.id)})
            delay = self.retry_delays[delivery.attempt]
            delivery.attempt += 1
            loop.call_later(delay, queue.pending.put_nowait, delivery)
            return
        log.error("handler keeps failing, dead-lettered", exc_info=error, extra={"event_id": str(delivery.envelope.id)})
        if queue.dead_letters is None:
            queue.dead.append(delivery.envelope)
            _resolve(delivery)
            return
        try:
            await queue.dead_letters(delivery.envelope, repr(error))
        except Exception:
            # Not yet kept anywhere: try the whole thing again later rather than lose it.
            log.warning("could not keep a dead letter; retrying it", exc_info=True)
            loop.call_later(self.retry_delays[-1] if self.retry_delays else 1.0, queue.pending.put_nowait, delivery)
            return
        _resolve(delivery)

    async def dead_letter_count(self, queue: str) -> int:
        q = self._queues.get(queue)
        return len(q.dead) if q else 0

    async def replay_dead_letters(self, queue: str) -> int:
        """Hand the in-memory dead letters to the queue again (the durable ones live in the service's
        database and are replayed by its runtime)."""
        q = self._queues.get(queue)
        if not q:
            return 0
        dead, q.dead = q.dead, []
        loop = asyncio.get_running_loop()
        for envelope in dead:
            q.pending.put_nowait(_Delivery(envelope, loop.create_future()))
        return len(dead)


def _resolve(delivery: _Delivery) -> None:
    if not delivery.done.done():
        delivery.done.set_result(None)


_shared: InProcessTransport | None = None


def shared_inprocess_transport(**kwargs: object) -> InProcessTransport:
    """The one bus of this process: every service of the all-in-one mode publishes and consumes on it."""
    global _shared
    if _shared is None:
        _shared = InProcessTransport(**kwargs)  # type: ignore[arg-type]
    return _shared
