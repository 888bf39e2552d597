"""Dead letters of the in-process bus, kept in the consuming service's own database so that a crash
loses none (RabbitMQ keeps its own in a dead-letter queue). Replayed by the running process when an
operator asks (`python -m shopkit.replay --service <name> --dead-letters`)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, Column, DateTime, String, Table, Text, delete, func, select, update
from sqlalchemy.engine import Connection

from contracts import Envelope
from shopkit.db import GUID, kit_metadata, upsert_insert

dead_letters = Table(
    "dead_letters",
    kit_metadata,
    Column("event_id", GUID(), primary_key=True),
    Column("event_type", String(100), nullable=False),
    Column("envelope", JSON, nullable=False),
    Column("error", Text, nullable=False),
    Column("dead_at", DateTime(timezone=True), nullable=False),
    Column("replay_requested_at", DateTime(timezone=True)),
)


def record_dead_letter(connection: Connection, envelope: Envelope, error: str) -> None:
    values = {
        "event_id": envelope.id,
        "event_type": envelope.type,
        "envelope": envelope.model_dump(mode="json"),
        "error": error[:2000],
        "dead_at": datetime.now(UTC),
    }
    statement: Any = upsert_insert(connection, dead_letters).values(**values)
    connection.execute(
        statement.on_conflict_do_update(
            index_elements=[dead_letters.c.event_id],
            set_={"error": values["error"], "dead_at": values["dead_at"], "replay_requested_at": None},
        )
    )


def count(connection: Connection) -> int:
    return connection.execute(select(func.count()).select_from(dead_letters)).scalar_one()


def request_replay(connection: Connection) -> int:
    result = connection.execute(update(dead_letters).values(replay_requested_at=datetime.now(UTC)))
    return result.rowcount or 0


def take_replay_requests(connection: Connection, limit: int = 100) -> list[Envelope]:
    rows = connection.execute(
        select(dead_letters.c.envelope)
        .where(dead_letters.c.replay_requested_at.is_not(None))
        .order_by(dead_letters.c.dead_at)
        .limit(limit)
    ).scalars()
    envelopes = [Envelope.model_validate(row) for row in rows]
    if envelopes:
        connection.execute(delete(dead_letters).where(dead_letters.c.event_id.in_([e.id for e in envelopes])))
    return envelopes
