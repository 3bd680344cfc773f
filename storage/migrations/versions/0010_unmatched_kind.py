"""A message kept from a sender who is no contact has its own kind, "unmatched", and the unique
index of such messages' provider ids holds only them.

The index (0004) held every inbound message with no contact, and a contact removed by a PUT
leaves its messages with no contact: two removed contacts' messages with one provider id (ids
the widget or an integrator chose repeat across people), or one of them and a stranger's, made
the PUT fail on the index every time (a 409 "retry it" that no retry could pass).

The messages kept before this revision from senders who were no contact are the inbound ones
with neither a contact nor a thread; a removed contact's inbound message that had no thread
cannot be told from them and is counted with them (they were all in the unique index already,
so none collide).

Revision ID: 0010
Revises: 0009
"""

from alembic import op
import sqlalchemy as sa


revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None

BEFORE = "contact_id IS NULL AND direction = 'in' AND provider_id IS NOT NULL"
AFTER = "kind = 'unmatched' AND provider_id IS NOT NULL"


def upgrade() -> None:
    op.execute(sa.text("UPDATE messages SET kind = 'unmatched' WHERE contact_id IS NULL "
                       "AND thread_id IS NULL AND direction = 'in' AND kind = 'inbound'"))
    op.drop_index('uq_messages_unmatched_provider_id', table_name='messages',
                  sqlite_where=sa.text(BEFORE), postgresql_where=sa.text(BEFORE))
    op.create_index('uq_messages_unmatched_provider_id', 'messages', ['channel', 'provider_id'],
                    unique=True, sqlite_where=sa.text(AFTER), postgresql_where=sa.text(AFTER))


def downgrade() -> None:
    # Fails, as it should, where removed contacts' messages share a provider id: the old index
    # cannot hold them.
    op.drop_index('uq_messages_unmatched_provider_id', table_name='messages',
                  sqlite_where=sa.text(AFTER), postgresql_where=sa.text(AFTER))
    op.execute(sa.text("UPDATE messages SET kind = 'inbound' WHERE kind = 'unmatched'"))
    op.create_index('uq_messages_unmatched_provider_id', 'messages', ['channel', 'provider_id'],
                    unique=True, sqlite_where=sa.text(BEFORE), postgresql_where=sa.text(BEFORE))
