"""Indexes the account list needs at a million accounts (bench/scale.py; docs/architecture.md,
"Performance", "Scale"): a plan or vertical filter counts and pages in index order, a filter on
the live thread's state starts from the live threads in that state, and (PostgreSQL, when the
pg_trgm extension can be had) a search by a part of the external id or name uses trigram
indexes instead of reading every account.

Revision ID: 0015
Revises: 0014
"""

from alembic import op
import sqlalchemy as sa


revision = '0015'
down_revision = '0014'
branch_labels = None
depends_on = None

LIVE = "state IN ('open', 'offered', 'awaiting_confirmation')"
TRIGRAMS = (("ix_accounts_external_id_trgm", "lower(external_id)"),
            ("ix_accounts_name_trgm", "lower(name)"))


def _trigrams_available() -> bool:
    """pg_trgm is installed already, or can be: the server has it and this role may create an
    extension in this database (a role without CREATE on it migrates all the same, and the
    search reads every account)."""
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return False
    return bool(bind.execute(sa.text(
        "SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pg_trgm') "
        "OR (EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'pg_trgm') "
        "AND has_database_privilege(current_database(), 'CREATE'))")).scalar())


def upgrade() -> None:
    op.create_index('ix_accounts_plan_external_id', 'accounts', ['plan', 'external_id'])
    op.create_index('ix_accounts_vertical_external_id', 'accounts', ['vertical', 'external_id'])
    op.create_index('ix_threads_live_state', 'threads', ['state', 'account_id'],
                    sqlite_where=sa.text(LIVE), postgresql_where=sa.text(LIVE))
    if _trigrams_available():
        # Not in the models: an expression index of one dialect (the listing's search works
        # without it, reading every account).
        op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
        for name, expression in TRIGRAMS:
            op.execute(f"CREATE INDEX IF NOT EXISTS {name} ON accounts "
                       f"USING gin ({expression} gin_trgm_ops)")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for name, _ in TRIGRAMS:
            op.execute(f"DROP INDEX IF EXISTS {name}")
    op.drop_index('ix_threads_live_state', table_name='threads')
    op.drop_index('ix_accounts_vertical_external_id', table_name='accounts')
    op.drop_index('ix_accounts_plan_external_id', table_name='accounts')
