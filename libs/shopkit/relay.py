"""The outbox relay: publishes pending outbox rows in batches and marks them sent only once the broker
confirmed them (at-least-once; the consumers' inbox makes the effect exactly-once)."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy import Row, bindparam, select, update
from sqlalchemy.engine import Connection

from shopkit import tracing
from shopkit.bus import Outgoing, Transport, TransportUnavailable
from shopkit.db import Database
from shopkit.outbox import DEAD, ENVELOPE_TEXT, PENDING, SENT, outbox

log = logging.getLogger("shopkit.relay")

T = TypeVar("T")


class OutboxRelay:
    """Publishes pending outbox rows in batches. Several relays (replicas) may run at once: each claims
    its batch with FOR UPDATE SKIP LOCKED, and holds the lock until the broker confirmed and the rows
    are marked sent, so a row is never published by two relays at once; a relay killed between the
    confirm and the commit leaves the rows pending and they are published again (consumers dedupe).

    On SQLite (the all-in-one process: one relay per service, no replicas) no lock is held while
    publishing: the in-process bus returns only once the consumers' transactions have committed, and
    a transaction held open meanwhile would block every writer of this service's database, the
    consumers of its own events included."""

    def __init__(
        self,
        db: Database,
        transport: Transport,
        *,
        batch_size: int = 100,
        poll_interval: float = 0.5,
        max_attempts: int = 10,
        linger: float = 0.0,
    ) -> None:
        self.db = db
        self.linger = linger
        self.transport = transport
        self.batch_size = batch_size
        self.poll_interval = poll_interval
        self.max_attempts = max_attempts
        self._wake = asyncio.Event()
        self._pending_statement: Any = None
        self._claim_statement: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None

    def wake(self) -> None:
        """Called after a commit that wrote to the outbox, from any thread."""
        loop = self._loop
        if loop is None:
            return
        try:
            loop.call_soon_threadsafe(self._wake.set)
        except RuntimeError:
            pass  # the loop closed meanwhile (shutdown): nothing left to wake

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.db.on_outbox_write = self.wake
        self._task = asyncio.create_task(self._run(), name=f"outbox-relay-{self.db.service}")

    async def stop(self) -> None:
        if self.db.on_outbox_write == self.wake:  # leave another relay's hook on a shared Database alone
            self.db.on_outbox_write = None
        if self._task:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None

    async def _run(self) -> None:
        backoff = self.poll_interval
        while True:
            # Cleared before publishing, so a commit made while a batch is in flight wakes the next round
            # instead of waiting for the poll interval.
            self._wake.clear()
            try:
                sent = await self.publish_once()
                backoff = self.poll_interval
                if sent == self.batch_size:
                    continue
            except TransportUnavailable as exc:
                log.warning("broker unavailable, outbox relay backs off", extra={"error": str(exc)})
                backoff = min(backoff * 2, 10.0)
                # Every commit would wake us again while the broker is down: back off regardless.
                await asyncio.sleep(backoff)
                continue
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("outbox relay failed; retrying")
                backoff = min(backoff * 2, 10.0)
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=backoff)
            except TimeoutError:
                continue
            if self.linger:
                # Woken by a commit: let the commits of the next few milliseconds join this batch (one
                # claim, one publish round and one mark for all of them instead of for each).
                await asyncio.sleep(self.linger)

    async def publish_once(self) -> int:
        """Claim, publish and mark one batch. Returns how many rows were marked sent."""
        if self.db.is_sqlite:
            return await self._publish_unlocked()
        claimed = await _in_thread(self._open_and_claim)
        if claimed is None:
            return 0
        connection, rows = claimed
        try:
            messages = _outgoing(self.db.service, rows)
            failures = await self.transport.publish_raw(messages)
        except BaseException:
            await _in_thread(_rollback_and_close, connection)
            raise
        await _in_thread(self._mark_and_close, connection, rows, failures)
        return len(rows) - len(failures)

    def _mark_and_close(self, connection: Connection, rows: Sequence[Row[Any]], failures: dict[str, str]) -> None:
        # One thread hop for both: the mark's commit and the connection's return to the pool.
        try:
            self._mark(connection, rows, failures)
        except BaseException:
            _rollback(connection)
            raise
        finally:
            connection.close()

    async def _publish_unlocked(self) -> int:
        rows = await _in_thread(self._read_pending)
        if not rows:
            return 0
        failures = await self.transport.publish_raw(_outgoing(self.db.service, rows))
        await _in_thread(self._mark_apart, rows, failures)
        return len(rows) - len(failures)

    def _read_pending(self) -> list[Row[Any]]:
        with self.db.engine.connect() as connection:
            return list(connection.execute(self._pending()).all())

    def _mark_apart(self, rows: Sequence[Row[Any]], failures: dict[str, str]) -> None:
        with self.db.engine.connect() as connection:
            self._mark(connection, rows, failures)

    def _pending(self) -> Any:
        if self._pending_statement is None:
            self._pending_statement = (
                select(outbox.c.id, outbox.c.event_type, ENVELOPE_TEXT, outbox.c.attempts)
                .where(outbox.c.status == PENDING)
                .order_by(outbox.c.created_at)
                .limit(self.batch_size)
            )
        return self._pending_statement

    def _open_and_claim(self) -> tuple[Connection, list[Row[Any]]] | None:
        connection = self.db.engine.connect()
        try:
            rows = self._claim(connection)
        except BaseException:
            connection.close()
            raise
        if not rows:
            connection.rollback()
            connection.close()
            return None
        return connection, rows

    def _claim(self, connection: Connection) -> list[Row[Any]]:
        if self._claim_statement is None:
            self._claim_statement = self._pending().with_for_update(skip_locked=True)
        return list(connection.execute(self._claim_statement).all())

    def _mark(self, connection: Connection, rows: Sequence[Row[Any]], failures: dict[str, str]) -> None:
        now = datetime.now(UTC)
        sent_ids = [row.id for row in rows if str(row.id) not in failures]
        if sent_ids:
            connection.execute(_MARK_SENT, {"ids": sent_ids, "now": now})
        for row in rows:
            error = failures.get(str(row.id))
            if error is None:
                continue
            attempts = row.attempts + 1
            status = DEAD if attempts >= self.max_attempts else PENDING
            if status == DEAD:
                log.error("outbox message is dead after %s attempts", attempts, extra={"event_id": str(row.id)})
            connection.execute(
                update(outbox)
                .where(outbox.c.id == row.id)
                .values(attempts=attempts, last_error=error[:2000], status=status)
            )
        connection.commit()


def _outgoing(service: str, rows: Sequence[Row[Any]]) -> list[Outgoing]:
    messages = [Outgoing(str(row.id), row.event_type, row.body.encode()) for row in rows]
    if tracing.enabled():
        for row in rows:
            parent = json.loads(row.body).get("traceparent")
            with tracing.span(f"publish {row.event_type}", service=service, parent=parent, kind=tracing.PRODUCER):
                pass
    return messages


# Built once: the ids go in as one expanding parameter.
_MARK_SENT = (
    update(outbox)
    .where(outbox.c.id.in_(bindparam("ids", expanding=True)))
    .values(status=SENT, published_at=bindparam("now"))
)


def _rollback(connection: Connection) -> None:
    if connection.in_transaction():
        connection.rollback()


def _rollback_and_close(connection: Connection) -> None:
    try:
        _rollback(connection)
    finally:
        connection.close()


async def _in_thread(fn: Callable[..., T], *args: Any) -> T:
    """Run a blocking DB call in a thread and see it through even if we are cancelled meanwhile: the
    connection must not be touched by the clean-up while the call is still using it."""
    task = asyncio.ensure_future(asyncio.to_thread(fn, *args))
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        await asyncio.wait([task])
        raise
