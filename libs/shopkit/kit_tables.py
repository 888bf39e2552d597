"""The kit's own tables (outbox, inbox, dead letters) in every service's schema, created and migrated
by this one module. A service's Alembic history adopts a kit version with one call, e.g. in its initial
revision `kit_tables.upgrade(0, 1)` and later `kit_tables.upgrade(1, 2)`, so no service copies the DDL.

Versions: 1 outbox and inbox; 2 the in-process bus's dead letters and an index to prune the inbox."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import sqlalchemy as sa
from alembic import op

from shopkit.db import GUID

LATEST = 2


def _create_v1() -> None:
    op.create_table(
        "inbox",
        sa.Column("event_id", GUID(length=36), nullable=False),
        sa.Column("handler", sa.String(length=100), nullable=False),
        sa.Column("event_type", sa.String(length=100), nullable=False),
        sa.Column("handled_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("event_id", "handler"),
    )
    op.create_table(
        "outbox",
        sa.Column("id", GUID(length=36), nullable=False),
        sa.Column("event_type", sa.String(length=100), nullable=False),
        sa.Column("envelope", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.create_index("ix_outbox_pending", ["status", "created_at"], unique=False)


def _drop_v1() -> None:
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_index("ix_outbox_pending")
    op.drop_table("outbox")
    op.drop_table("inbox")


def _create_v2() -> None:
    op.create_table(
        "dead_letters",
        sa.Column("event_id", GUID(length=36), nullable=False),
        sa.Column("event_type", sa.String(length=100), nullable=False),
        sa.Column("envelope", sa.JSON(), nullable=False),
        sa.Column("error", sa.Text(), nullable=False),
        sa.Column("dead_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("replay_requested_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("event_id"),
    )
    with op.batch_alter_table("inbox", schema=None) as batch_op:
        batch_op.create_index("ix_inbox_handled_at", ["handled_at"], unique=False)


def _drop_v2() -> None:
    with op.batch_alter_table("inbox", schema=None) as batch_op:
        batch_op.drop_index("ix_inbox_handled_at")
    op.drop_table("dead_letters")


_UP: Mapping[int, Callable[[], None]] = {1: _create_v1, 2: _create_v2}
_DOWN: Mapping[int, Callable[[], None]] = {1: _drop_v1, 2: _drop_v2}


def upgrade(from_version: int, to_version: int) -> None:
    """Inside a service's Alembic revision: bring the kit's tables from one version to another."""
    for version in range(from_version + 1, to_version + 1):
        _UP[version]()


def downgrade(from_version: int, to_version: int) -> None:
    for version in range(from_version, to_version, -1):
        _DOWN[version]()


def rename_handlers(renamed: Mapping[str, str]) -> None:
    """Inbox records follow a handler whose registered name changed, so redelivered events that the
    handler already applied stay skipped."""
    inbox = sa.table("inbox", sa.column("handler", sa.String))
    for old, new in renamed.items():
        op.execute(inbox.update().where(inbox.c.handler == old).values(handler=new))
