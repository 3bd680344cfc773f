"""Persistence: SQLAlchemy tables, repositories and the unit of work, with Alembic migrations."""
