"""kit tables v2: dead letters of the in-process bus, inbox pruning index

Revision ID: 22b09621491e
Revises: fece0833f2a7
Create Date: 2026-12-01 23:30:00
"""

from collections.abc import Sequence

from shopkit import kit_tables

revision: str = "22b09621491e"
down_revision: str | None = "fece0833f2a7"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    kit_tables.upgrade(1, 2)


def downgrade() -> None:
    kit_tables.downgrade(2, 1)
