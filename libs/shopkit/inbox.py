"""The inbox: the idempotent consumer. A handler's writes and the record that it handled the event
commit in one transaction, so a redelivered event changes nothing the second time. Handlers are keyed
by the stable name they were registered under (never by where their code lives)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

from sqlalchemy import Column, DateTime, Index, String, Table, delete
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from shopkit.db import GUID, kit_metadata, upsert_insert

inbox = Table(
    "inbox",
    kit_metadata,
    Column("event_id", GUID(), primary_key=True),
    Column("handler", String(100), primary_key=True),
    Column("event_type", String(100), nullable=False),
    Column("handled_at", DateTime(timezone=True), nullable=False),
    Index("ix_inbox_handled_at", "handled_at"),
)


def record_new_handled(session: Session, handled: Sequence[tuple[str, uuid.UUID, str]]) -> set[tuple[str, uuid.UUID]]:
    """Record (handler, event id, event type) triples, whatever their handlers, in one statement. Returns
    the (handler, event id) pairs not handled before: only those are to be applied.

    On PostgreSQL a concurrent duplicate waits on the first one's row lock and then sees the conflict,
    so two deliveries racing each other still apply once."""
    if not handled:
        return set()
    now = datetime.now(UTC)
    # In key order: two batches recording the same redelivered events queue on them in one sequence
    # instead of each holding one the other waits for.
    rows = [
        {"event_id": i, "handler": h, "event_type": t, "handled_at": now}
        for i, h, t in sorted((i, h, t) for h, i, t in handled)
    ]
    connection = session.connection()
    return {(row.handler, row.event_id) for row in connection.execute(_record_statement(connection.dialect.name), rows)}


@lru_cache(maxsize=4)
def _record_statement(dialect: str) -> Any:
    """Built once per dialect and given the rows as parameters (SQLAlchemy sends them as one multi-row
    INSERT): `.values(rows)` made a new statement to compile for every batch."""
    return upsert_insert(dialect, inbox).on_conflict_do_nothing().returning(inbox.c.handler, inbox.c.event_id)


def record_once(session: Session, event_id: uuid.UUID, event_type: str, handler: str) -> bool:
    """Record one event; False if `handler` handled it already."""
    return bool(record_new_handled(session, [(handler, event_id, event_type)]))


def prune_handled(connection: Connection, *, older_than: timedelta) -> int:
    """Forget events handled long ago: far longer than any redelivery (broker retries, replays of dead
    letters, re-published outbox rows) could bring them back."""
    cutoff = datetime.now(UTC) - older_than
    return connection.execute(delete(inbox).where(inbox.c.handled_at < cutoff)).rowcount or 0
