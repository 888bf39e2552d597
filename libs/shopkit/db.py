"""Engines and sessions for PostgreSQL (psycopg2) and SQLite alike; the unit of work is in shopkit.uow."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from sqlalchemy import CHAR, Engine, MetaData, TypeDecorator, create_engine, event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.orm import Session, sessionmaker

log = logging.getLogger("shopkit.db")

# The kit's own tables (outbox, inbox, dead letters) live in every service's schema; alembic sees them
# through this, and shopkit.kit_tables creates and migrates them.
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


def upsert_insert(bind: Session | Connection | str, table: Any) -> Any:
    """INSERT with ON CONFLICT support for the dialect of a session or connection, or the dialect's name
    (PostgreSQL or SQLite): both spell `on_conflict_do_nothing()` / `on_conflict_do_update(...)` the
    same way."""
    if isinstance(bind, str):
        name = bind
    else:
        name = (bind.dialect if isinstance(bind, Connection) else bind.get_bind().dialect).name
    return postgresql.insert(table) if name == "postgresql" else sqlite.insert(table)


def make_engine(url: str, *, schema: str | None = None, pool_size: int = 10, autocommit: bool = False) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
        _sqlite_write_transactions(engine)
        return engine
    connect_args = {"options": f"-csearch_path={schema}"} if schema else {}
    return create_engine(
        url,
        # A pool of 10 was starved while a restarted broker redelivered a backlog to 16 handler threads,
        # so the ceiling is 2 x pool_size. No overflow: an overflow connection is closed when returned,
        # and under steady load that was a new PostgreSQL session (a fork and a login) every few
        # requests. The pool opens connections as they are needed and keeps them.
        pool_size=2 * pool_size,
        max_overflow=0,
        pool_timeout=5,
        # No pre-ping: it is one more round trip per checkout. A connection that died with the server
        # fails its request once (503) and the pool is invalidated, see problems.py.
        pool_pre_ping=False,
        pool_recycle=1800,
        connect_args=connect_args,
        **({"isolation_level": "AUTOCOMMIT"} if autocommit else {}),
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


class Database:
    """A service's engine and session factory."""

    def __init__(self, url: str, *, service: str, pool_size: int = 10) -> None:
        self.url = url
        self.service = service
        self.engine = make_engine(url, schema=service, pool_size=pool_size)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)
        # For reads that need no transaction (one statement, or reads that may see different moments):
        # on PostgreSQL they skip BEGIN and ROLLBACK, two round trips of a one-statement read. Their own
        # small pool of autocommit connections: switching a pooled connection in and out of autocommit
        # costs a SET on every return. SQLite keeps its sessions: its "begin" hook is what serialises
        # writers, and reads there cost nothing.
        self.read_engine = (
            self.engine
            if self.is_sqlite
            else make_engine(url, schema=service, pool_size=max(1, pool_size // 2), autocommit=True)
        )
        self.read_sessions = sessionmaker(self.read_engine, expire_on_commit=False)
        self.on_outbox_write: Callable[[], None] | None = None
        # Closing a request's session (a rollback, then the connection back to the pool) runs here and
        # nowhere else: in a shared pool of threads, closes could queue behind threads that are waiting
        # for the very connections those closes would return.
        self.closer = ThreadPoolExecutor(max_workers=4, thread_name_prefix=f"{service}-session-close")

    @property
    def is_sqlite(self) -> bool:
        return self.engine.dialect.name == "sqlite"

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
        self.read_engine.dispose()
