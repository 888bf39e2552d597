"""The kit's outbox and inbox tables, for the kit's own runtime tests.

Revision ID: 0001
"""

from alembic import op

from shopkit import inbox, outbox  # noqa: F401  (registers the tables on kit_metadata)
from shopkit.db import kit_metadata

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    kit_metadata.create_all(op.get_bind())


def downgrade() -> None:
    kit_metadata.drop_all(op.get_bind())
