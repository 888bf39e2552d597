"""The transactional outbox: events are written in the caller's transaction and published afterwards
by the relay (shopkit.relay), which waits for broker confirms before it marks them sent."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from sqlalchemy import (
    JSON,
    Column,
    DateTime,
    Index,
    Integer,
    String,
    Table,
    Text,
    bindparam,
    cast,
    delete,
    func,
    select,
    update,
)
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from contracts import Envelope
from shopkit.db import GUID, kit_metadata

PENDING, SENT, DEAD = "pending", "sent", "dead"

outbox = Table(
    "outbox",
    kit_metadata,
    Column("id", GUID(), primary_key=True),
    Column("event_type", String(100), nullable=False),
    Column("envelope", JSON, nullable=False),
    Column("status", String(10), nullable=False, default=PENDING),
    Column("attempts", Integer, nullable=False, default=0),
    Column("last_error", Text),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("published_at", DateTime(timezone=True)),
    Index("ix_outbox_pending", "status", "created_at"),
)


# Built once: a statement with .values() per call is a new construct to build, hash and look up in the
# compiled cache every time; this one is compiled once and only its parameters change. The envelope goes
# in as the JSON text pydantic writes (bound as text: the JSON column's own encoder would encode again),
# and comes out for the relay as that same text (ENVELOPE_TEXT), which is what is published.
_INSERT_OUTBOX = outbox.insert().values(envelope=bindparam("envelope_json", type_=Text))
ENVELOPE_TEXT = cast(outbox.c.envelope, Text).label("body")


def add_to_outbox(session: Session, envelopes: Sequence[tuple[Envelope, datetime]]) -> None:
    """Write (envelope, emitted at) pairs in one statement: SQLAlchemy sends the rows as one multi-row
    INSERT, where a statement per event was a round trip each while the transaction holds its locks."""
    if not envelopes:
        return
    session.connection().execute(
        _INSERT_OUTBOX,
        [
            {
                "id": envelope.id,
                "event_type": envelope.type,
                "envelope_json": envelope.model_dump_json(),
                "status": PENDING,
                "attempts": 0,
                "created_at": at,
            }
            for envelope, at in envelopes
        ],
    )


def backlog(connection: Connection) -> dict[str, int]:
    rows = connection.execute(select(outbox.c.status, func.count()).group_by(outbox.c.status)).all()
    counts = {PENDING: 0, DEAD: 0}
    counts.update({status: count for status, count in rows if status != SENT})
    return counts


def replay_dead(connection: Connection) -> int:
    result = connection.execute(
        update(outbox).where(outbox.c.status == DEAD).values(status=PENDING, attempts=0, last_error=None)
    )
    return result.rowcount or 0


def prune_sent(connection: Connection, *, older_than: timedelta) -> int:
    """Sent rows are history: keep them a while for inspection, then let them go."""
    cutoff = datetime.now(UTC) - older_than
    result = connection.execute(delete(outbox).where(outbox.c.status == SENT, outbox.c.published_at < cutoff))
    return result.rowcount or 0
