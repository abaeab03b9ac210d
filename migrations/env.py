"""Alembic environment: runs on a connection that piper-ops opened from the selected profile.

The URL never comes from an ini file: services/database/schema.py builds the Alembic Config in code
and hands over a connection already inside the caller's transaction, so a migration and the stamp
that follows it commit together or not at all.
"""

from __future__ import annotations

from alembic import context

from services.database.models import Base

connection = context.config.attributes.get("connection")
if connection is None:
    raise SystemExit("error: run migrations through piper-ops: `invoke setup --env NAME`")

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    compare_type=True,
    compare_server_default=True,
    transactional_ddl=True,
)
with context.begin_transaction():
    context.run_migrations()
