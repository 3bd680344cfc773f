"""A usage row per account (usage_totals), kept in step with the events, so that a usage matrix
reads one row per account instead of up to 31 daily rollups per metric; it also holds the
latest gauge readings, so usage_gauges goes. Existing usage is carried over: the rows are derived
from usage_daily (storage.usage_totals.rebuild_usage_totals), as of the migration's clock.

Revision ID: 0014
Revises: 0013
"""

from datetime import datetime, timezone

from alembic import op
import sqlalchemy as sa

import storage.models
from storage.usage_totals import rebuild_usage_totals


revision = '0014'
down_revision = '0013'
branch_labels = None
depends_on = None


def upgrade() -> None:
    when = storage.models.UTCDateTime(timezone=True)
    account_id = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')
    op.create_table(
        'usage_totals',
        sa.Column('account_id', account_id, nullable=False),
        sa.Column('base_day', sa.Date(), nullable=False),
        sa.Column('messages', sa.BigInteger(), nullable=False),
        sa.Column('features', sa.Text(), nullable=True),
        sa.Column('seats', sa.BigInteger(), nullable=True),
        sa.Column('seats_at', when, nullable=True),
        sa.Column('integrations', sa.BigInteger(), nullable=True),
        sa.Column('integrations_at', when, nullable=True),
        sa.Column('peak', sa.BigInteger(), nullable=True),
        sa.Column('peak_day', sa.Date(), nullable=True),
        sa.Column('carried', sa.BigInteger(), nullable=True),
        sa.Column('carried_at', when, nullable=True),
        sa.ForeignKeyConstraint(['account_id'], ['accounts.id'],
                                name=op.f('fk_usage_totals_account_id_accounts'),
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('account_id', name=op.f('pk_usage_totals')),
    )
    rebuild_usage_totals(op.get_bind(), datetime.now(timezone.utc))
    op.drop_table('usage_gauges')


def downgrade() -> None:
    op.create_table(
        'usage_gauges',
        sa.Column('account_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'),
                  nullable=False),
        sa.Column('metric', sa.String(length=100), nullable=False),
        sa.Column('quantity', sa.BigInteger(), nullable=False),
        sa.Column('at', storage.models.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['account_id'], ['accounts.id'],
                                name=op.f('fk_usage_gauges_account_id_accounts'),
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('account_id', 'metric', name=op.f('pk_usage_gauges')),
    )
    # The latest reading of each gauge: the last one of its latest day.
    op.execute("""
        INSERT INTO usage_gauges (account_id, metric, quantity, at)
        SELECT d.account_id, d.metric, d.last_quantity, d.last_at FROM usage_daily d
        JOIN (SELECT account_id, metric, MAX(day) AS day FROM usage_daily
              WHERE metric IN ('seats', 'integrations') GROUP BY account_id, metric) AS l
          ON l.account_id = d.account_id AND l.metric = d.metric AND l.day = d.day
    """)
    op.drop_table('usage_totals')
