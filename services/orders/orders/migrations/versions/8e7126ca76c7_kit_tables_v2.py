"""kit tables v2: dead letters of the in-process bus, inbox pruning index, stable handler names

Revision ID: 8e7126ca76c7
Revises: 09fd15707d67
Create Date: 2026-12-01 23:30:00
"""

from collections.abc import Sequence

from shopkit import kit_tables

revision: str = "8e7126ca76c7"
down_revision: str | None = "09fd15707d67"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    kit_tables.upgrade(1, 2)
    # Handlers are now registered under stable names; their inbox records follow them.
    kit_tables.rename_handlers(
        {
            "orders.handlers.on_payment_succeeded": "payment-succeeded",
            "orders.handlers.on_stock_committed": "stock-committed",
            "orders.handlers.on_stock_rejected": "stock-rejected",
            "orders.handlers.on_payment_refunded": "payment-refunded",
            "orders.handlers.on_payment_failed": "payment-failed",
        }
    )


def downgrade() -> None:
    kit_tables.rename_handlers(
        {
            "payment-succeeded": "orders.handlers.on_payment_succeeded",
            "stock-committed": "orders.handlers.on_stock_committed",
            "stock-rejected": "orders.handlers.on_stock_rejected",
            "payment-refunded": "orders.handlers.on_payment_refunded",
            "payment-failed": "orders.handlers.on_payment_failed",
        }
    )
    kit_tables.downgrade(2, 1)
