"""Unit tests need no database: only the default catalog, read once."""
