"""fulfilment (shipped, delivered, address, shipment), refunded amounts, refunds seen kept on their
order, the product view fed by ProductChanged

Revision ID: 5b2d7c41a9e3
Revises: 8e7126ca76c7
Create Date: 2026-12-02 10:00:00
"""

from collections import defaultdict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import sqlalchemy as sa
from alembic import op

import shopkit.db

revision: str = "5b2d7c41a9e3"
down_revision: str | None = "8e7126ca76c7"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD_STATUSES = ("pending_payment", "paid", "confirmed", "cancelled", "refund_pending", "refunded")
NEW_STATUSES = ("pending_payment", "paid", "confirmed", "shipped", "delivered", "cancelled", "refund_pending", "refunded")


def _status_check(statuses: tuple[str, ...]) -> str:
    return "status IN (" + ", ".join(f"'{s}'" for s in statuses) + ")"


# The orders columns the data steps touch, as they are in this revision.
orders = sa.table(
    "orders",
    sa.column("id", shopkit.db.GUID()),
    sa.column("payment_id", shopkit.db.GUID()),
    sa.column("status", sa.String()),
    sa.column("refunds_seen", sa.JSON(none_as_null=True)),
)
refunded_payments = sa.table(
    "refunded_payments",
    sa.column("order_id", shopkit.db.GUID()),
    sa.column("payment_id", shopkit.db.GUID()),
    sa.column("reason", sa.Text()),
    sa.column("at", sa.DateTime(timezone=True)),
)


@contextmanager
def _children_kept(*tables: str) -> Iterator[None]:
    """SQLite rebuilds `orders` to change its CHECK constraints, and dropping the old table (foreign
    keys on, as the kit's connections have them, and not switchable inside the migration's
    transaction) would cascade-delete the rows that reference it: keep them aside and put them back."""
    if op.get_bind().dialect.name != "sqlite":
        yield
        return
    for table in tables:
        op.execute(f"CREATE TEMP TABLE _kept_{table} AS SELECT * FROM {table}")
    yield
    for table in tables:
        op.execute(f"DELETE FROM {table}")
        op.execute(f"INSERT INTO {table} SELECT * FROM _kept_{table}")
        op.execute(f"DROP TABLE _kept_{table}")


def upgrade() -> None:
    # Refunds seen before their payment move onto their order (they were full refunds: v1 events).
    # Those of the payment that has since become the paying one were applied already.
    connection = op.get_bind()
    seen: dict[str, list[dict[str, object]]] = defaultdict(list)
    for order_id, payment_id, reason, paying in connection.execute(
        sa.select(
            refunded_payments.c.order_id, refunded_payments.c.payment_id, refunded_payments.c.reason, orders.c.payment_id
        )
        .join(orders, orders.c.id == refunded_payments.c.order_id)
        .order_by(refunded_payments.c.at)
    ):
        if payment_id != paying:
            seen[str(order_id)].append({"payment_id": str(payment_id), "refunded": None, "fully": True, "reason": reason})

    with _children_kept("order_items", "order_events"), op.batch_alter_table("orders", schema=None) as batch_op:
        batch_op.add_column(sa.Column("refunded_amount", sa.Numeric(12, 2), server_default="0", nullable=False))
        batch_op.add_column(sa.Column("refunds_seen", sa.JSON(none_as_null=True), nullable=True))
        batch_op.add_column(sa.Column("shipping_address", sa.JSON(none_as_null=True), nullable=True))
        batch_op.add_column(sa.Column("shipment_carrier", sa.String(length=100), nullable=True))
        batch_op.add_column(sa.Column("shipment_tracking_number", sa.String(length=100), nullable=True))
        batch_op.add_column(sa.Column("shipped_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.drop_constraint("ck_orders_status", type_="check")
        batch_op.create_check_constraint("ck_orders_status", _status_check(NEW_STATUSES))
        batch_op.create_check_constraint("ck_orders_refunded_amount", "refunded_amount >= 0")

    for order_id, refunds in seen.items():
        connection.execute(sa.update(orders).where(orders.c.id == order_id).values(refunds_seen=refunds))
    op.drop_table("refunded_payments")

    op.create_table(
        "products",
        sa.Column("product_id", shopkit.db.GUID(length=36), nullable=False),
        sa.Column("sku", sa.String(length=100), nullable=False),
        sa.Column("name", sa.String(length=300), nullable=False),
        sa.Column("price", sa.Numeric(precision=12, scale=2), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("is_active", sa.Boolean(), nullable=False),
        sa.Column("stock", sa.Integer(), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("product_id"),
    )


def downgrade() -> None:
    op.drop_table("products")
    op.create_table(
        "refunded_payments",
        sa.Column("order_id", shopkit.db.GUID(length=36), nullable=False),
        sa.Column("payment_id", shopkit.db.GUID(length=36), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["order_id"], ["orders.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("order_id", "payment_id"),
    )
    connection = op.get_bind()
    now = sa.func.now()
    for order_id, refunds in connection.execute(
        sa.select(orders.c.id, orders.c.refunds_seen).where(orders.c.refunds_seen.is_not(None))
    ):
        # The old schema knew only full refunds; a partial one has no place there.
        for refund in refunds or []:
            if refund.get("fully", True):
                connection.execute(
                    sa.insert(refunded_payments).values(
                        order_id=order_id, payment_id=refund["payment_id"], reason=refund.get("reason", ""), at=now
                    )
                )
    # The old status list ends at confirmed: a shipped or delivered order is a confirmed one there.
    connection.execute(
        sa.update(orders).where(orders.c.status.in_(["shipped", "delivered"])).values(status="confirmed")
    )
    with (
        _children_kept("order_items", "order_events", "refunded_payments"),
        op.batch_alter_table("orders", schema=None) as batch_op,
    ):
        batch_op.drop_constraint("ck_orders_refunded_amount", type_="check")
        batch_op.drop_constraint("ck_orders_status", type_="check")
        batch_op.create_check_constraint("ck_orders_status", _status_check(OLD_STATUSES))
        batch_op.drop_column("delivered_at")
        batch_op.drop_column("shipped_at")
        batch_op.drop_column("shipment_tracking_number")
        batch_op.drop_column("shipment_carrier")
        batch_op.drop_column("shipping_address")
        batch_op.drop_column("refunds_seen")
        batch_op.drop_column("refunded_amount")
