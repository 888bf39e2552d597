"""The kit's tables at their latest version, for the kit's own runtime tests.

Revision ID: 0001
"""

from shopkit import kit_tables

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    kit_tables.upgrade(0, kit_tables.LATEST)


def downgrade() -> None:
    kit_tables.downgrade(kit_tables.LATEST, 0)
