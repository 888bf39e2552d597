"""login failures per client address, and attempts being checked

Revision ID: 5dad007382b5
Revises: 22b09621491e
Create Date: 2026-12-01 22:44:37.344179
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import shopkit.db


revision: str = '5dad007382b5'
down_revision: str | None = '22b09621491e'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Failures counted before this revision have no address: they stay, as failures from an address no
    # client has, so they still slow the account's logins down but lock no pair. They age out in 15 min.
    with op.batch_alter_table('login_failures', schema=None) as batch_op:
        batch_op.add_column(sa.Column('client_address', sa.String(length=64), nullable=False, server_default=''))
        batch_op.add_column(sa.Column('checking', sa.Boolean(), nullable=False, server_default=sa.false()))
        batch_op.drop_index('ix_login_failures_email_failed_at')
        batch_op.create_index('ix_login_failures_email_address_failed_at', ['email', 'client_address', 'failed_at'], unique=False)
    # The defaults only carry the old rows over: every new row says where it came from and what it is.
    with op.batch_alter_table('login_failures', schema=None) as batch_op:
        batch_op.alter_column('client_address', existing_type=sa.String(length=64), server_default=None)
        batch_op.alter_column('checking', existing_type=sa.Boolean(), server_default=None)


def downgrade() -> None:
    with op.batch_alter_table('login_failures', schema=None) as batch_op:
        batch_op.drop_index('ix_login_failures_email_address_failed_at')
        batch_op.create_index('ix_login_failures_email_failed_at', ['email', 'failed_at'], unique=False)
        batch_op.drop_column('checking')
        batch_op.drop_column('client_address')
