"""One outbox: queued SMS and WhatsApp messages are sent by outbox jobs (kind "message").

Every outbound message still queued on sms or whatsapp gets its job (key "message:<id>", payload
{"message_id": id}), due when the message was: at `not_before` (or when it was queued), or
later if a retry or a lease had moved it on; the sends it had started are the job's attempts.
The lease and the next try now live on the job, so `messages.next_attempt_at` goes, and so does
the index the old message claim scanned (`ix_messages_queued`): nothing reads queued rows across
threads any more. Stop the scheduler while migrating: a dispatcher of the old code would not see
the jobs, and one of the new code would not find queued rows without them.

Downgrade gives the pending message jobs' next try back to their messages and deletes every
"message" job.

Revision ID: 0007
Revises: 0006
"""

from alembic import op
import sqlalchemy as sa

import storage.models


revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None

QUEUED = "status = 'queued' AND direction = 'out'"
PUSHED = ('sms', 'whatsapp')  # the pushed channels (SMS, WhatsApp) at this revision
KIND = 'message'

_when = storage.models.UTCDateTime(timezone=True)
messages = sa.table(
    'messages', sa.column('id', sa.Integer), sa.column('channel', sa.String),
    sa.column('direction', sa.String), sa.column('status', sa.String),
    sa.column('not_before', _when), sa.column('at', _when),
    sa.column('next_attempt_at', _when), sa.column('attempts', sa.Integer))
outbox = sa.table(
    'outbox', sa.column('id', sa.Integer), sa.column('kind', sa.String),
    sa.column('key', sa.String), sa.column('payload', sa.JSON), sa.column('status', sa.String),
    sa.column('attempts', sa.Integer), sa.column('next_attempt_at', _when),
    sa.column('created_at', _when))


def upgrade() -> None:
    conn = op.get_bind()
    queued = conn.execute(
        sa.select(messages.c.id, messages.c.not_before, messages.c.at,
                  messages.c.next_attempt_at, messages.c.attempts)
        .where(messages.c.direction == 'out', messages.c.status == 'queued',
               messages.c.channel.in_(PUSHED))
        .order_by(messages.c.id)).all()
    jobs = [{"kind": KIND, "key": f"message:{m.id}", "payload": {"message_id": m.id},
             "status": "pending", "attempts": m.attempts or 0,
             "next_attempt_at": max(t for t in (m.not_before or m.at, m.next_attempt_at) if t),
             "created_at": m.at} for m in queued]
    if jobs:
        conn.execute(sa.insert(outbox), jobs)
    op.drop_index('ix_messages_queued', table_name='messages')
    op.drop_column('messages', 'next_attempt_at')


def downgrade() -> None:
    conn = op.get_bind()
    op.add_column('messages', sa.Column('next_attempt_at', _when, nullable=True))
    op.create_index('ix_messages_queued', 'messages', ['channel', 'id'],
                    sqlite_where=sa.text(QUEUED), postgresql_where=sa.text(QUEUED))
    pending = conn.execute(sa.select(outbox.c.payload, outbox.c.next_attempt_at)
                           .where(outbox.c.kind == KIND, outbox.c.status == 'pending')).all()
    for job in pending:
        message_id = (job.payload or {}).get("message_id")
        if isinstance(message_id, int):
            conn.execute(sa.update(messages).where(messages.c.id == message_id,
                                                   messages.c.status == 'queued')
                         .values(next_attempt_at=job.next_attempt_at))
    conn.execute(sa.delete(outbox).where(outbox.c.kind == KIND))
