"""reconciliation: when each payment was last looked up, and the cursors of the providers' event lists

Revision ID: b3c41e7d9f20
Revises: 5c1e0b7d9a42
Create Date: 2026-12-02 07:15:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "b3c41e7d9f20"
down_revision: str | None = "5c1e0b7d9a42"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("payments", schema=None) as batch_op:
        batch_op.add_column(sa.Column("reconciled_at", sa.DateTime(timezone=True), nullable=True))

    op.create_table(
        "reconcile_cursors",
        sa.Column("name", sa.String(length=40), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("last_event_id", sa.String(length=255), nullable=True),
        sa.Column("claimed_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )


def downgrade() -> None:
    op.drop_table("reconcile_cursors")
    with op.batch_alter_table("payments", schema=None) as batch_op:
        batch_op.drop_column("reconciled_at")
