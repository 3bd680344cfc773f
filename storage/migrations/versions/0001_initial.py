"""Initial schema.

Accounts, contacts, usage events with their daily rollups and latest gauges, threshold states,
signals.

Revision ID: 0001
Revises: 
"""

from alembic import op
import sqlalchemy as sa
import storage.models


revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('accounts',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('external_id', sa.String(length=200), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('plan', sa.String(length=50), nullable=False),
    sa.Column('vertical', sa.String(length=50), nullable=False),
    sa.Column('timezone', sa.String(length=64), nullable=False),
    sa.Column('billing_day', sa.Integer(), nullable=False),
    sa.Column('plan_since', storage.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column("csat", sa.Numeric(precision=6, scale=4), nullable=True),
    sa.Column("sentiment", sa.Numeric(precision=6, scale=4), nullable=True),
    sa.Column('open_escalations', sa.Integer(), nullable=False),
    sa.Column('health_updated_at', storage.models.UTCDateTime(timezone=True), nullable=True),
    sa.Column('created_at', storage.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', storage.models.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_accounts')),
    sa.UniqueConstraint('external_id', name=op.f('uq_accounts_external_id'))
    )
    op.create_table('contacts',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('account_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('external_id', sa.String(length=200), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=True),
    sa.Column('role', sa.String(length=20), nullable=False),
    sa.Column('phone', sa.String(length=20), nullable=True),
    sa.Column('whatsapp', sa.String(length=20), nullable=True),
    sa.Column('web_user_id', sa.String(length=200), nullable=True),
    sa.Column('email', sa.String(length=320), nullable=True),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], name=op.f('fk_contacts_account_id_accounts'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_contacts')),
    sa.UniqueConstraint('external_id', name=op.f('uq_contacts_external_id'))
    )
    with op.batch_alter_table('contacts', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_contacts_account_id'), ['account_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_contacts_phone'), ['phone'], unique=False)
        batch_op.create_index(batch_op.f('ix_contacts_web_user_id'), ['web_user_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_contacts_whatsapp'), ['whatsapp'], unique=False)

    op.create_table('signals',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('account_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('key', sa.String(length=200), nullable=False),
    sa.Column('direction', sa.String(length=4), nullable=False),
    sa.Column('from_plan', sa.String(length=50), nullable=False),
    sa.Column('to_plan', sa.String(length=50), nullable=False),
    sa.Column('metric', sa.String(length=100), nullable=False),
    sa.Column('value', sa.Numeric(precision=20, scale=2), nullable=False),
    sa.Column('threshold', sa.Numeric(precision=20, scale=2), nullable=False),
    sa.Column('crossed_at', storage.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('detected_at', storage.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('event_id', sa.String(length=200), nullable=True),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], name=op.f('fk_signals_account_id_accounts'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_signals'))
    )
    with op.batch_alter_table('signals', schema=None) as batch_op:
        batch_op.create_index('ix_signals_account_detected', ['account_id', 'detected_at'], unique=False)

    op.create_table('threshold_states',
    sa.Column('account_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('key', sa.String(length=200), nullable=False),
    sa.Column('changed_at', storage.models.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], name=op.f('fk_threshold_states_account_id_accounts'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('account_id', 'key', name=op.f('pk_threshold_states'))
    )
    op.create_table('usage_daily',
    sa.Column('account_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('metric', sa.String(length=100), nullable=False),
    sa.Column('day', sa.Date(), nullable=False),
    sa.Column('total', sa.BigInteger(), nullable=False),
    sa.Column('max_quantity', sa.BigInteger(), nullable=False),
    sa.Column('last_quantity', sa.BigInteger(), nullable=False),
    sa.Column('last_at', storage.models.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], name=op.f('fk_usage_daily_account_id_accounts'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('account_id', 'metric', 'day', name=op.f('pk_usage_daily'))
    )
    op.create_table('usage_events',
    sa.Column('seq', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('event_id', sa.String(length=200), nullable=False),
    sa.Column('account_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('metric', sa.String(length=100), nullable=False),
    sa.Column('quantity', sa.BigInteger(), nullable=False),
    sa.Column('at', storage.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('received_at', storage.models.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], name=op.f('fk_usage_events_account_id_accounts'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('seq', name=op.f('pk_usage_events')),
    sa.UniqueConstraint('event_id', name=op.f('uq_usage_events_event_id'))
    )
    with op.batch_alter_table('usage_events', schema=None) as batch_op:
        batch_op.create_index('ix_usage_events_account_at', ['account_id', 'at'], unique=False)

    op.create_table('usage_gauges',
    sa.Column('account_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('metric', sa.String(length=100), nullable=False),
    sa.Column('quantity', sa.BigInteger(), nullable=False),
    sa.Column('at', storage.models.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], name=op.f('fk_usage_gauges_account_id_accounts'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('account_id', 'metric', name=op.f('pk_usage_gauges'))
    )


def downgrade() -> None:
    op.drop_table('usage_gauges')
    with op.batch_alter_table('usage_events', schema=None) as batch_op:
        batch_op.drop_index('ix_usage_events_account_at')

    op.drop_table('usage_events')
    op.drop_table('usage_daily')
    op.drop_table('threshold_states')
    with op.batch_alter_table('signals', schema=None) as batch_op:
        batch_op.drop_index('ix_signals_account_detected')

    op.drop_table('signals')
    with op.batch_alter_table('contacts', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_contacts_whatsapp'))
        batch_op.drop_index(batch_op.f('ix_contacts_web_user_id'))
        batch_op.drop_index(batch_op.f('ix_contacts_phone'))
        batch_op.drop_index(batch_op.f('ix_contacts_account_id'))

    op.drop_table('contacts')
    op.drop_table('accounts')
