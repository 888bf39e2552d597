"""The inbox: the idempotent consumer. A handler's writes and the record that it handled the event
commit in one transaction, so a redelivered event changes nothing the second time."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import Column, CursorResult, DateTime, String, Table
from sqlalchemy.orm import Session

from shopkit.db import GUID, kit_metadata, upsert_insert

inbox = Table(
    "inbox",
    kit_metadata,
    Column("event_id", GUID(), primary_key=True),
    Column("handler", String(100), primary_key=True),
    Column("event_type", String(100), nullable=False),
    Column("handled_at", DateTime(timezone=True), nullable=False),
)


def record_once(session: Session, event_id: uuid.UUID, event_type: str, handler: str) -> bool:
    """Record that `handler` handles this event. False if it already did: skip the work.

    On PostgreSQL a concurrent duplicate waits on the first one's row lock and then sees the conflict,
    so two deliveries racing each other still apply once."""
    values = {
        "event_id": event_id,
        "handler": handler,
        "event_type": event_type,
        "handled_at": datetime.now(UTC),
    }
    stmt = upsert_insert(session, inbox).values(**values).on_conflict_do_nothing()
    result = cast(CursorResult[Any], session.execute(stmt))
    return bool(result.rowcount)
