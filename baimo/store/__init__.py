"""Persistence: SQLAlchemy tables, the engine (SQLite WAL by default, PostgreSQL by URL) and Alembic migrations."""
