"""Engines, sessions and the unit of work, for PostgreSQL (psycopg2) and SQLite alike."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

from sqlalchemy import CHAR, Engine, MetaData, TypeDecorator, create_engine, event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import Session, sessionmaker

from contracts import Envelope, EventData, new_envelope

log = logging.getLogger("shopkit.db")

# The kit's own tables (outbox, inbox) live in every service's schema; alembic sees them via this.
kit_metadata = MetaData()


class GUID(TypeDecorator[uuid.UUID]):
    """UUID as native uuid on PostgreSQL and as 36 characters on SQLite."""

    impl = CHAR(36)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> Any:
        if dialect.name == "postgresql":
            return dialect.type_descriptor(postgresql.UUID(as_uuid=True))
        return dialect.type_descriptor(CHAR(36))

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        if value is None:
            return None
        value = value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))
        return value if dialect.name == "postgresql" else str(value)

    def process_result_value(self, value: Any, dialect: Dialect) -> uuid.UUID | None:
        if value is None or isinstance(value, uuid.UUID):
            return value
        return uuid.UUID(str(value))


def upsert_insert(session: Session, table: Any) -> Any:
    """INSERT with ON CONFLICT support for the session's dialect (PostgreSQL or SQLite): both spell
    `on_conflict_do_nothing()` / `on_conflict_do_update(...)` the same way."""
    if session.get_bind().dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


def make_engine(url: str, *, schema: str | None = None, pool_size: int = 10) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
        _sqlite_write_transactions(engine)
        return engine
    connect_args = {"options": f"-csearch_path={schema}"} if schema else {}
    return create_engine(
        url,
        # Overflow connections are closed when returned (under a burst that is a new PostgreSQL session
        # every other request), but a fixed pool of 10 was starved while a restarted broker redelivered
        # a backlog to 16 handler threads; the ceiling of 2 x pool_size keeps that headroom.
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_timeout=5,
        # No pre-ping: it is one more round trip per checkout. A connection that died with the server
        # fails its request once (503) and the pool is invalidated, see problems.py.
        pool_pre_ping=False,
        pool_recycle=1800,
        connect_args=connect_args,
    )


def _sqlite_write_transactions(engine: Engine) -> None:
    """SQLite has no row locks: BEGIN IMMEDIATE serialises writers, which is what FOR UPDATE buys on
    PostgreSQL, and WAL lets readers go on meanwhile."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")


class UnitOfWork:
    """One transaction: the state change, the events it emits (outbox) and the message that caused it
    (inbox) commit together or not at all."""

    def __init__(
        self,
        session: Session,
        *,
        producer: str,
        after_commit: Callable[[], None] | None = None,
        causation: Envelope | None = None,
    ) -> None:
        self.session = session
        self.producer = producer
        self.causation = causation
        self._after_commit = after_commit
        self._emitted = False

    def emit(self, data: EventData, *, correlation_id: str | uuid.UUID | None = None) -> Envelope:
        """Put an event in the outbox of this transaction; the relay publishes it after commit."""
        from shopkit.outbox import add_to_outbox

        causation = self.causation
        envelope = new_envelope(
            data,
            producer=self.producer,
            correlation_id=correlation_id or (causation.correlation_id if causation else None),
            causation_id=causation.id if causation else None,
        )
        add_to_outbox(self.session, envelope)
        self._emitted = True
        return envelope

    def commit(self) -> None:
        self.session.commit()
        if self._emitted and self._after_commit:
            self._after_commit()
        self._emitted = False

    def rollback(self) -> None:
        self.session.rollback()
        self._emitted = False


class Database:
    """A service's engine and session factory."""

    def __init__(self, url: str, *, service: str, pool_size: int = 10) -> None:
        self.url = url
        self.service = service
        self.engine = make_engine(url, schema=service, pool_size=pool_size)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)
        self.on_outbox_write: Callable[[], None] | None = None
        # Closing a request's session (a rollback, then the connection back to the pool) runs here and
        # nowhere else: in a shared pool of threads, closes could queue behind threads that are waiting
        # for the very connections those closes would return.
        self.closer = ThreadPoolExecutor(max_workers=4, thread_name_prefix=f"{service}-session-close")

    @property
    def is_sqlite(self) -> bool:
        return self.engine.dialect.name == "sqlite"

    @contextmanager
    def unit_of_work(self, causation: Envelope | None = None) -> Iterator[UnitOfWork]:
        with self.sessions() as session:
            uow = UnitOfWork(session, producer=self.service, after_commit=self.outbox_written, causation=causation)
            try:
                yield uow
            except BaseException:
                uow.rollback()
                raise

    def outbox_written(self) -> None:
        # Read once: the relay unhooks itself from the event loop's thread while request threads commit.
        hook = self.on_outbox_write
        if hook is None:
            return
        try:
            hook()
        except Exception:
            # The transaction is already committed: failing the caller now would report a write that
            # happened as failed. The relay's next poll publishes the rows anyway.
            log.warning("could not wake the outbox relay", exc_info=True)

    def dispose(self) -> None:
        self.closer.shutdown(wait=False)
        self.engine.dispose()
