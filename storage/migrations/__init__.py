"""Alembic migrations for the Upgrade Chat schema."""
