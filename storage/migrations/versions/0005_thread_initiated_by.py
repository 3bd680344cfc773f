"""Threads say who started them: "business" (an opening after a crossing) or "buyer" (a buyer
who wrote in with no thread, a control-cohort buyer among them), so the experiment can count
buyer-initiated conversations apart.

Revision ID: 0005
Revises: 0004
"""

from alembic import op
import sqlalchemy as sa


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('threads') as batch:
        batch.add_column(sa.Column('initiated_by', sa.String(10), nullable=False,
                                   server_default='business'))


def downgrade() -> None:
    with op.batch_alter_table('threads') as batch:
        batch.drop_column('initiated_by')
