"""Erasure and retention: a contact can be erased (`contacts.erased_at`: its personal fields are
emptied and its external id becomes a pseudonym, the row stays), and a message's body can be
removed (`messages.redacted_at`: by an erasure, or by the retention purge), the row staying.

`ix_messages_unredacted_at` indexes the time of the messages whose body is still there, so the
retention purge finds the oldest of them without walking the rows it purged before.

Nothing is backfilled: no contact was erased and no body removed before this revision.

Revision ID: 0009
Revises: 0008
"""

from alembic import op
import sqlalchemy as sa

import storage.models


revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None

UNREDACTED = sa.text("redacted_at IS NULL")


def upgrade() -> None:
    when = storage.models.UTCDateTime(timezone=True)
    with op.batch_alter_table('contacts') as batch:
        batch.add_column(sa.Column('erased_at', when, nullable=True))
    with op.batch_alter_table('messages') as batch:
        batch.add_column(sa.Column('redacted_at', when, nullable=True))
    op.create_index('ix_messages_unredacted_at', 'messages', ['at'], unique=False,
                    sqlite_where=UNREDACTED, postgresql_where=UNREDACTED)


def downgrade() -> None:
    op.drop_index('ix_messages_unredacted_at', table_name='messages',
                  sqlite_where=UNREDACTED, postgresql_where=UNREDACTED)
    with op.batch_alter_table('messages') as batch:
        batch.drop_column('redacted_at')
    with op.batch_alter_table('contacts') as batch:
        batch.drop_column('erased_at')
