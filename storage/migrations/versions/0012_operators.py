"""Operators: the people who sign in to the operator console (email, name, password hash, role
admin or csm, disabled), and the sign-in throttle (failed attempts per key, and until when that
key is refused).

Revision ID: 0012
Revises: 0011
"""

from alembic import op
import sqlalchemy as sa

import storage.models


revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None


def upgrade() -> None:
    when = storage.models.UTCDateTime(timezone=True)
    big_id = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')
    op.create_table(
        'operators',
        sa.Column('id', big_id, nullable=False),
        sa.Column('email', sa.String(length=320), nullable=False),
        sa.Column('name', sa.String(length=200), nullable=False),
        sa.Column('password_hash', sa.String(length=300), nullable=False),
        sa.Column('role', sa.String(length=10), nullable=False),
        sa.Column('created_at', when, nullable=False),
        sa.Column('last_sign_in_at', when, nullable=True),
        sa.Column('disabled', sa.Boolean(), server_default=sa.text('false'), nullable=False),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_operators')),
        sa.UniqueConstraint('email', name=op.f('uq_operators_email')),
    )
    op.create_table(
        'sign_in_throttle',
        sa.Column('key', sa.String(length=100), nullable=False),
        sa.Column('failures', sa.Integer(), nullable=False),
        sa.Column('window_start', when, nullable=False),
        sa.Column('locked_until', when, nullable=True),
        sa.PrimaryKeyConstraint('key', name=op.f('pk_sign_in_throttle')),
    )


def downgrade() -> None:
    op.drop_table('sign_in_throttle')
    op.drop_table('operators')
