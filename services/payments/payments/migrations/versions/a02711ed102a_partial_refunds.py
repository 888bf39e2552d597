"""partial refunds (refunded amount, restock per refund), fulfilment of orders, provider cancellations,
retries of webhook events

Revision ID: a02711ed102a
Revises: 09f0298fb39e
Create Date: 2026-12-01 23:41:35.049316
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "a02711ed102a"
down_revision: str | None = "09f0298fb39e"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("payable_orders", schema=None) as batch_op:
        batch_op.add_column(sa.Column("fulfilment", sa.String(length=20), nullable=True))

    with op.batch_alter_table("payments", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("refunded_amount", sa.Numeric(precision=12, scale=2), nullable=False, server_default="0")
        )
        batch_op.add_column(sa.Column("provider_cancel_due_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.create_index("ix_payments_created_at", ["created_at"], unique=False)
        batch_op.create_index("ix_payments_provider_cancel_due_at", ["provider_cancel_due_at"], unique=False)
        batch_op.create_index("ix_payments_provider_transaction", ["provider", "provider_transaction_id"], unique=False)
    # Until now a refund was always of the whole payment.
    op.execute("UPDATE payments SET refunded_amount = amount WHERE status = 'refunded'")

    with op.batch_alter_table("provider_log", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_provider_log_created_at"), ["created_at"], unique=False)

    with op.batch_alter_table("refunds", schema=None) as batch_op:
        batch_op.add_column(sa.Column("restock", sa.Boolean(), nullable=False, server_default=sa.true()))
        batch_op.create_index("ix_refunds_status", ["status", "claimed_until"], unique=False)

    with op.batch_alter_table("webhook_events", schema=None) as batch_op:
        batch_op.add_column(sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"))
        batch_op.add_column(sa.Column("retry_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("webhook_events", schema=None) as batch_op:
        batch_op.drop_column("retry_at")
        batch_op.drop_column("attempts")

    with op.batch_alter_table("refunds", schema=None) as batch_op:
        batch_op.drop_index("ix_refunds_status")
        batch_op.drop_column("restock")

    with op.batch_alter_table("provider_log", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_provider_log_created_at"))

    # A partly refunded payment had no name before: it was still succeeded.
    op.execute("UPDATE payments SET status = 'succeeded' WHERE status = 'partially_refunded'")
    with op.batch_alter_table("payments", schema=None) as batch_op:
        batch_op.drop_index("ix_payments_provider_transaction")
        batch_op.drop_index("ix_payments_provider_cancel_due_at")
        batch_op.drop_index("ix_payments_created_at")
        batch_op.drop_column("provider_cancel_due_at")
        batch_op.drop_column("refunded_amount")

    with op.batch_alter_table("payable_orders", schema=None) as batch_op:
        batch_op.drop_column("fulfilment")
