"""Message indexes: status callbacks by provider id, the outbound claim over queued rows only,
and one stored copy of a message from a sender who is no contact.

Revision ID: 0004
Revises: 0003
"""

from alembic import op
import sqlalchemy as sa


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None

UNMATCHED = "contact_id IS NULL AND direction = 'in' AND provider_id IS NOT NULL"
QUEUED = "status = 'queued' AND direction = 'out'"


def upgrade() -> None:
    # Earlier versions could store a retried message from an unknown sender twice: keep the
    # first copy so the unique index can be built.
    op.execute(sa.text(
        "DELETE FROM messages WHERE " + UNMATCHED + " AND id > ("
        "SELECT MIN(m2.id) FROM messages m2 WHERE m2.contact_id IS NULL AND m2.direction = 'in'"
        " AND m2.channel = messages.channel AND m2.provider_id = messages.provider_id)"))
    op.create_index('uq_messages_unmatched_provider_id', 'messages', ['channel', 'provider_id'],
                    unique=True, sqlite_where=sa.text(UNMATCHED),
                    postgresql_where=sa.text(UNMATCHED))
    op.create_index('ix_messages_provider_id', 'messages', ['provider_id'])
    op.create_index('ix_messages_queued', 'messages', ['channel', 'id'],
                    sqlite_where=sa.text(QUEUED), postgresql_where=sa.text(QUEUED))


def downgrade() -> None:
    op.drop_index('ix_messages_queued', table_name='messages')
    op.drop_index('ix_messages_provider_id', table_name='messages')
    op.drop_index('uq_messages_unmatched_provider_id', table_name='messages')
