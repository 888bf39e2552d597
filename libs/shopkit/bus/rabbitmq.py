"""RabbitMQ transport over aio-pika: one durable topic exchange, a durable queue per service bound to the
event types it consumes, retry queues with a fixed delay each (a TTL per queue, so a long delay never
holds back a short one), and a dead-letter queue. Messages are persistent; publishing waits for confirms;
consumers take what the broker has delivered (up to the prefetch) as one batch, and a message is acked
only after the transaction that applied it committed."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Sequence
from typing import Any

import aio_pika
import aiormq
from aio_pika.abc import (
    AbstractChannel,
    AbstractExchange,
    AbstractIncomingMessage,
    AbstractRobustConnection,
    ConnectionParameter,
)
from aio_pika.exceptions import DeliveryError
from aiormq.connection import TCPTransportFactory, TLSTransportFactory, TransportFactory
from yarl import URL

from contracts import Envelope
from shopkit.bus import BatchHandler, DeadLetterSink, Outgoing, TransportUnavailable
from shopkit.sends import OneSendPerTurn

log = logging.getLogger("shopkit.bus.rabbitmq")

EXCHANGE = "shop.events"
ATTEMPT_HEADER = "x-shop-attempt"
PUBLISH_TIMEOUT = 10.0
PERSISTENT = int(aio_pika.DeliveryMode.PERSISTENT)
_AT_A_TIME = aiormq.Connection.FRAME_BUFFER_SIZE


async def _settle(outcome: Awaitable[None]) -> None:
    """Ack, nack or reject a delivery. The channel it came on may have died meanwhile (broker restart):
    the broker then redelivers the message by itself (the inbox skips it if it was handled), so this is
    no error; left unhandled it would only surface as 'Task exception was never retrieved'."""
    try:
        await outcome
    except Exception as exc:
        log.warning("could not settle a delivery; the broker will redeliver it", extra={"error": repr(exc)})


class _OneSendPerTurnFactory(TransportFactory):
    """aiormq writes every frame with a send of its own: a batch's acks, a relay's publishes and their
    frames leave in one send per turn of the loop instead."""

    def __init__(self, tls: bool) -> None:
        self._opener = TLSTransportFactory() if tls else TCPTransportFactory()

    async def create(self, url: URL, **kwargs: Any) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        reader, writer = await self._opener.create(url, **kwargs)
        # StreamWriter has no public way to write through another transport; every write, drain and
        # close goes through this attribute.
        writer._transport = OneSendPerTurn(writer.transport, asyncio.get_running_loop())  # type: ignore[attr-defined, arg-type]
        return reader, writer


class _Connection(aio_pika.RobustConnection):
    # aio-pika hands aiormq only the keyword arguments it declares.
    PARAMETERS = (
        *aio_pika.RobustConnection.PARAMETERS,
        ConnectionParameter(name="transport_factory", parser=lambda value: value, is_kwarg=True),
    )


def retry_queue(queue: str, attempt: int) -> str:
    return f"{queue}.retry.{attempt}"


def dead_letter_queue(queue: str) -> str:
    return f"{queue}.dlq"


class RabbitMQTransport:
    def __init__(
        self,
        url: str,
        *,
        prefetch: int = 100,
        workers: int = 2,
        batch_size: int = 100,
        retry_delays: list[float] | None = None,
        exchange: str = EXCHANGE,
    ) -> None:
        self.url = url
        self.prefetch = prefetch
        self.workers = workers
        self.batch_size = batch_size
        self.retry_delays = retry_delays if retry_delays is not None else [0.5, 2.0, 8.0]
        self.exchange_name = exchange
        self._connection: AbstractRobustConnection | None = None
        self._publish_channel: AbstractChannel | None = None
        self._exchange: AbstractExchange | None = None
        self._consume_channels: list[AbstractChannel] = []
        self._tasks: set[asyncio.Task[None]] = set()

    async def connect(self) -> None:
        # Built as connect_robust would, which puts every keyword argument into the URL's query.
        connection = _Connection(
            URL(self.url), transport_factory=_OneSendPerTurnFactory(tls=URL(self.url).scheme == "amqps")
        )
        await connection.connect(timeout=10)
        self._connection = connection
        self._publish_channel = await self._connection.channel(publisher_confirms=True)
        self._exchange = await self._publish_channel.declare_exchange(
            self.exchange_name, aio_pika.ExchangeType.TOPIC, durable=True
        )

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._connection is not None:
            try:
                # A robust connection in the middle of reconnecting can wait for the broker forever.
                await asyncio.wait_for(self._connection.close(), timeout=5)
            except Exception:
                log.warning("RabbitMQ connection did not close cleanly", exc_info=True)
        self._connection = None

    @property
    def is_connected(self) -> bool:
        return self._connection is not None and not self._connection.is_closed

    async def publish(self, envelopes: list[Envelope]) -> dict[str, str]:
        return await self.publish_raw([Outgoing.of(envelope) for envelope in envelopes])

    async def publish_raw(self, messages: Sequence[Outgoing]) -> dict[str, str]:
        if self._publish_channel is None or not self.is_connected:
            raise TransportUnavailable("not connected to RabbitMQ")
        try:
            channel = await self._publish_channel.get_underlay_channel()
        except aiormq.exceptions.AMQPError as exc:
            raise TransportUnavailable(f"publish failed: {exc!r}") from exc
        results: list[BaseException | None] = []
        # Side by side, as many at a time as aiormq's queue of frames holds: past it, each publish
        # waits for room and they leave one per turn of the loop again.
        for start in range(0, len(messages), _AT_A_TIME):
            results += await asyncio.gather(
                *(self._publish_one(channel, message) for message in messages[start : start + _AT_A_TIME]),
                return_exceptions=True,
            )
        failures: dict[str, str] = {}
        for message, result in zip(messages, results, strict=True):
            if isinstance(result, DeliveryError):
                failures[message.id] = f"broker refused: {result}"
            elif isinstance(result, BaseException):
                raise TransportUnavailable(f"publish failed: {result!r}") from result
        return failures

    async def _publish_one(self, channel: aiormq.abc.AbstractChannel, outgoing: Outgoing) -> None:
        # On aiormq's channel rather than aio-pika's exchange, for wait=False: with it each publish
        # holds the channel's lock until its frames are written, so a batch goes out one publish per
        # turn of the loop, each in a send of its own; the broker's confirm is still awaited.
        # mandatory=False: an event nobody consumes yet (OrderConfirmed, say) is not an error.
        await channel.basic_publish(
            outgoing.body,
            exchange=self.exchange_name,
            routing_key=outgoing.type,
            properties=aiormq.spec.Basic.Properties(
                content_type="application/json",
                delivery_mode=PERSISTENT,
                message_id=outgoing.id,
                message_type=outgoing.type,
            ),
            mandatory=False,
            timeout=PUBLISH_TIMEOUT,
            wait=False,  # type: ignore[call-arg]  # aiormq's abstract channel does not declare it
        )

    async def declare(self, channel: AbstractChannel, queue: str, event_types: list[str]) -> Any:
        exchange = await channel.declare_exchange(self.exchange_name, aio_pika.ExchangeType.TOPIC, durable=True)
        await channel.declare_queue(dead_letter_queue(queue), durable=True)
        for attempt, delay in enumerate(self.retry_delays):
            await channel.declare_queue(
                retry_queue(queue, attempt),
                durable=True,
                arguments={
                    "x-message-ttl": int(delay * 1000),
                    "x-dead-letter-exchange": "",
                    "x-dead-letter-routing-key": queue,
                },
            )
        main = await channel.declare_queue(
            queue,
            durable=True,
            arguments={"x-dead-letter-exchange": "", "x-dead-letter-routing-key": dead_letter_queue(queue)},
        )
        for event_type in event_types:
            await main.bind(exchange, routing_key=event_type)
        return main

    async def subscribe(
        self,
        queue: str,
        event_types: list[str],
        handler: BatchHandler,
        *,
        dead_letters: DeadLetterSink | None = None,  # the broker keeps its own dead-letter queue
    ) -> None:
        assert self._connection is not None, "connect() first"
        channel = await self._connection.channel(publisher_confirms=True)
        await channel.set_qos(prefetch_count=self.prefetch)
        main = await self.declare(channel, queue, event_types)
        self._consume_channels.append(channel)
        delivered: asyncio.Queue[AbstractIncomingMessage] = asyncio.Queue()
        for number in range(self.workers):
            task = asyncio.create_task(
                self._work(channel, queue, handler, delivered), name=f"{queue}-consumer-{number}"
            )
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        await main.consume(delivered.put)

    async def _work(
        self,
        channel: AbstractChannel,
        queue: str,
        handler: BatchHandler,
        delivered: asyncio.Queue[AbstractIncomingMessage],
    ) -> None:
        while True:
            batch = [await delivered.get()]
            while len(batch) < self.batch_size and not delivered.empty():
                batch.append(delivered.get_nowait())
            try:
                await self._handle_batch(channel, queue, handler, batch)
            except asyncio.CancelledError:
                raise
            except Exception:
                # Unsettled messages go back to the broker when the channel closes; never stop consuming.
                log.exception("consumer failed on a batch", extra={"queue": queue})

    async def _handle_batch(
        self,
        channel: AbstractChannel,
        queue: str,
        handler: BatchHandler,
        messages: Sequence[AbstractIncomingMessage],
    ) -> None:
        readable: list[tuple[AbstractIncomingMessage, Envelope]] = []
        for message in messages:
            try:
                readable.append((message, Envelope.model_validate_json(message.body)))
            except ValueError:
                log.error("unreadable message dead-lettered", extra={"message_id": message.message_id})
                await _settle(message.reject(requeue=False))
        if not readable:
            return
        try:
            outcomes = await handler([envelope for _, envelope in readable])
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            outcomes = [exc] * len(readable)
        done = [message for (message, _), outcome in zip(readable, outcomes, strict=True) if outcome is None]
        # Side by side: each ack waits for its frame to be written, and one after the other they would
        # each take a turn of the loop and a send of their own.
        await asyncio.gather(*(_settle(message.ack()) for message in done))
        for (message, _), outcome in zip(readable, outcomes, strict=True):
            if outcome is not None:
                await self._retry_or_dead_letter(channel, queue, message, outcome)

    async def _retry_or_dead_letter(
        self, channel: AbstractChannel, queue: str, message: AbstractIncomingMessage, exc: BaseException
    ) -> None:
        headers = dict(message.headers or {})
        attempt = int(headers.get(ATTEMPT_HEADER, 0) or 0)  # type: ignore[arg-type, call-overload]
        if attempt < len(self.retry_delays):
            target = retry_queue(queue, attempt)
            log.warning("handler failed, retry %s of %s", attempt + 1, len(self.retry_delays), exc_info=exc)
        else:
            target = dead_letter_queue(queue)
            log.error("handler keeps failing, dead-lettered", exc_info=exc, extra={"message_id": message.message_id})
        headers[ATTEMPT_HEADER] = attempt + 1
        headers["x-shop-error"] = repr(exc)[:500]
        copy = aio_pika.Message(
            body=message.body,
            headers=headers,
            content_type=message.content_type,
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            message_id=message.message_id,
            type=message.type,
            correlation_id=message.correlation_id,
        )
        try:
            await channel.default_exchange.publish(copy, routing_key=target, timeout=PUBLISH_TIMEOUT)
        except Exception:
            # Could not park it: leave it with the broker, which redelivers it.
            log.warning("could not move a failed message; requeueing it", exc_info=True)
            await _settle(message.nack(requeue=True))
            return
        await _settle(message.ack())

    async def dead_letter_count(self, queue: str) -> int:
        assert self._connection is not None
        channel = await self._connection.channel()
        try:
            declared = await channel.declare_queue(dead_letter_queue(queue), durable=True)
            return declared.declaration_result.message_count or 0
        finally:
            await channel.close()

    async def replay_dead_letters(self, queue: str) -> int:
        """Move every dead-lettered message back to the service's queue, with a fresh retry budget."""
        assert self._connection is not None
        channel = await self._connection.channel(publisher_confirms=True)
        moved = 0
        try:
            dlq = await channel.declare_queue(dead_letter_queue(queue), durable=True)
            # Only what is dead now: a message that fails again while we drain comes back to the DLQ, and
            # draining until empty would then cycle it for ever.
            dead_now = dlq.declaration_result.message_count or 0
            while moved < dead_now and (message := await dlq.get(no_ack=False, fail=False)) is not None:
                headers = {k: v for k, v in (message.headers or {}).items() if not k.startswith("x-shop-")}
                await channel.default_exchange.publish(
                    aio_pika.Message(
                        body=message.body,
                        headers=headers,
                        content_type=message.content_type,
                        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                        message_id=message.message_id,
                        type=message.type,
                        correlation_id=message.correlation_id,
                    ),
                    routing_key=queue,
                )
                await message.ack()
                moved += 1
        finally:
            await channel.close()
        return moved
