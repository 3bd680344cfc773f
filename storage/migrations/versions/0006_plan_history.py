"""Plan history: every plan an account has been on, from when, and how (an operator's PUT, a
change confirmed in a conversation), so conversions can be read later whatever the account's
plan is now. Existing accounts start their history at their current plan and plan_since.

Revision ID: 0006
Revises: 0005
"""

from alembic import op
import sqlalchemy as sa

import storage.models


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    big_id = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')
    op.create_table(
        'plan_history',
        sa.Column('id', big_id, primary_key=True, autoincrement=True),
        sa.Column('account_id', big_id, sa.ForeignKey('accounts.id', ondelete='CASCADE'),
                  nullable=False),
        sa.Column('from_plan', sa.String(50), nullable=True),
        sa.Column('to_plan', sa.String(50), nullable=False),
        sa.Column('at', storage.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column('source', sa.String(20), nullable=False),
        sa.Column('plan_change_id', big_id,
                  sa.ForeignKey('plan_changes.id', ondelete='SET NULL'), nullable=True),
    )
    op.create_index('ix_plan_history_account_at', 'plan_history', ['account_id', 'at'])
    op.execute(sa.text(
        "INSERT INTO plan_history (account_id, from_plan, to_plan, at, source) "
        "SELECT id, NULL, plan, COALESCE(plan_since, created_at), 'backfill' FROM accounts"))


def downgrade() -> None:
    op.drop_index('ix_plan_history_account_at', table_name='plan_history')
    op.drop_table('plan_history')
