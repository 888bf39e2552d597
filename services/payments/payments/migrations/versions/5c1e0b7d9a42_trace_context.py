"""the trace context of an order and of its payments (a webhook is applied in the checkout's trace)

Revision ID: 5c1e0b7d9a42
Revises: a02711ed102a
Create Date: 2026-12-02 07:15:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "5c1e0b7d9a42"
down_revision: str | None = "a02711ed102a"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("payable_orders", schema=None) as batch_op:
        batch_op.add_column(sa.Column("traceparent", sa.String(length=55), nullable=True))
    with op.batch_alter_table("payments", schema=None) as batch_op:
        batch_op.add_column(sa.Column("traceparent", sa.String(length=55), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("payments", schema=None) as batch_op:
        batch_op.drop_column("traceparent")
    with op.batch_alter_table("payable_orders", schema=None) as batch_op:
        batch_op.drop_column("traceparent")
