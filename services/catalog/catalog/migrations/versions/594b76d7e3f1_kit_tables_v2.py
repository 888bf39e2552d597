"""kit tables v2: dead letters of the in-process bus, inbox pruning index, stable handler names

Revision ID: 594b76d7e3f1
Revises: bc2294d6f650
Create Date: 2026-12-01 23:30:00
"""

from collections.abc import Sequence

from shopkit import kit_tables

revision: str = "594b76d7e3f1"
down_revision: str | None = "bc2294d6f650"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    kit_tables.upgrade(1, 2)
    # Handlers are now registered under stable names; their inbox records follow them.
    kit_tables.rename_handlers(
        {
            "catalog.handlers.on_payment_succeeded": "payment-succeeded",
            "catalog.handlers.on_payment_refunded": "payment-refunded",
        }
    )


def downgrade() -> None:
    kit_tables.rename_handlers(
        {
            "payment-succeeded": "catalog.handlers.on_payment_succeeded",
            "payment-refunded": "catalog.handlers.on_payment_refunded",
        }
    )
    kit_tables.downgrade(2, 1)
