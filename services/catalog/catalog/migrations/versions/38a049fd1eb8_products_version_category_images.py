"""products: version, category, images

Existing products start at version 1 with no category and no images, which is what a product created
under this revision would be too: every row stays valid, on SQLite and PostgreSQL alike.

Revision ID: 38a049fd1eb8
Revises: 594b76d7e3f1
Create Date: 2026-12-01 23:25:29.141335
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import shopkit.db


revision: str = '38a049fd1eb8'
down_revision: str | None = '594b76d7e3f1'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('products', schema=None) as batch_op:
        batch_op.add_column(sa.Column('version', sa.Integer(), server_default=sa.text('1'), nullable=False))
        batch_op.add_column(sa.Column('category', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('images', sa.JSON(), server_default=sa.text("'[]'"), nullable=False))
        batch_op.create_index('ix_products_active_category', ['is_active', 'category'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('products', schema=None) as batch_op:
        batch_op.drop_index('ix_products_active_category')
        batch_op.drop_column('images')
        batch_op.drop_column('category')
        batch_op.drop_column('version')

