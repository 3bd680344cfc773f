"""Calls: the phone calls buyers ask for ("call me"), each scheduled, placed through the outbox
and followed by Twilio's status callbacks (core.calls). No phone number is stored: a call goes to
the contact's number as it stands when it is placed.

Revision ID: 0011
Revises: 0010
"""

from alembic import op
import sqlalchemy as sa

import storage.models


revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade() -> None:
    when = storage.models.UTCDateTime(timezone=True)
    big_id = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')
    op.create_table(
        'calls',
        sa.Column('id', big_id, nullable=False),
        sa.Column('account_id', big_id, nullable=False),
        sa.Column('contact_id', big_id, nullable=True),
        sa.Column('thread_id', big_id, nullable=True),
        sa.Column('status', sa.String(length=20), nullable=False),
        sa.Column('reason', sa.String(length=20), nullable=False),
        sa.Column('attempt', sa.Integer(), nullable=False),
        sa.Column('requested_at', when, nullable=True),
        sa.Column('scheduled_for', when, nullable=False),
        sa.Column('provider_id', sa.String(length=64), nullable=True),
        sa.Column('note', sa.String(length=200), nullable=True),
        sa.Column('created_at', when, nullable=False),
        sa.Column('updated_at', when, nullable=False),
        sa.ForeignKeyConstraint(['account_id'], ['accounts.id'],
                                name=op.f('fk_calls_account_id_accounts'), ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['contact_id'], ['contacts.id'],
                                name=op.f('fk_calls_contact_id_contacts'), ondelete='SET NULL'),
        sa.ForeignKeyConstraint(['thread_id'], ['threads.id'],
                                name=op.f('fk_calls_thread_id_threads'), ondelete='SET NULL'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_calls')),
        sa.UniqueConstraint('provider_id', name=op.f('uq_calls_provider_id')),
    )
    op.create_index('ix_calls_account_id', 'calls', ['account_id'], unique=False)
    op.create_index('ix_calls_thread_id', 'calls', ['thread_id'], unique=False)
    op.create_index('ix_calls_contact_status', 'calls', ['contact_id', 'status'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_calls_contact_status', table_name='calls')
    op.drop_index('ix_calls_thread_id', table_name='calls')
    op.drop_index('ix_calls_account_id', table_name='calls')
    op.drop_table('calls')
