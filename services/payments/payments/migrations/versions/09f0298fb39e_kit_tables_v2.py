"""kit tables v2: dead letters of the in-process bus, inbox pruning index, stable handler names

Revision ID: 09f0298fb39e
Revises: 1d59df53683a
Create Date: 2026-12-01 23:30:00
"""

from collections.abc import Sequence

from shopkit import kit_tables

revision: str = "09f0298fb39e"
down_revision: str | None = "1d59df53683a"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    kit_tables.upgrade(1, 2)
    # Handlers are now registered under stable names; their inbox records follow them.
    kit_tables.rename_handlers(
        {
            "payments.handlers.on_order_placed": "order-placed",
            "payments.handlers.on_order_cancelled": "order-cancelled",
            "payments.handlers.on_refund_requested": "refund-requested",
        }
    )


def downgrade() -> None:
    kit_tables.rename_handlers(
        {
            "order-placed": "payments.handlers.on_order_placed",
            "order-cancelled": "payments.handlers.on_order_cancelled",
            "refund-requested": "payments.handlers.on_refund_requested",
        }
    )
    kit_tables.downgrade(2, 1)
