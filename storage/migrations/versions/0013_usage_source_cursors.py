"""Pull mode: per usage source, the last ingested cursor value, when it was last pulled and the
error that stopped it (cli/pull.py).

Revision ID: 0013
Revises: 0012
"""

from alembic import op
import sqlalchemy as sa

import storage.models


revision = '0013'
down_revision = '0012'
branch_labels = None
depends_on = None


def upgrade() -> None:
    when = storage.models.UTCDateTime(timezone=True)
    op.create_table(
        'usage_source_cursors',
        sa.Column('source', sa.String(length=60), nullable=False),
        sa.Column('cursor', sa.Text(), nullable=True),
        sa.Column('updated_at', when, nullable=False),
        sa.Column('last_error', sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint('source', name=op.f('pk_usage_source_cursors')),
    )


def downgrade() -> None:
    op.drop_table('usage_source_cursors')
