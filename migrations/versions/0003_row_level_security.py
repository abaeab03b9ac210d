"""Row-level security on alpha_users and users, keyed on the acting user of the session.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28

The application role (piper_app) owns nothing and cannot bypass RLS, so it sees and changes only
the row whose username equals the session setting `piper.acting_user`; a session that names no
acting user sees nothing. The owner role (migrations, admin tasks) is not subject to these
policies, as the owner of a table never is unless RLS is forced.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("alpha_users", "users")
ACTING_USER = "current_setting('piper.acting_user', true)"


def upgrade() -> None:
    for table in TABLES:
        op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
        op.execute(f"CREATE POLICY {table}_acting_user ON {table} "
                   f"USING (username = {ACTING_USER}) WITH CHECK (username = {ACTING_USER})")


def downgrade() -> None:
    for table in TABLES:
        op.execute(f"DROP POLICY IF EXISTS {table}_acting_user ON {table}")
        op.execute(f"ALTER TABLE {table} DISABLE ROW LEVEL SECURITY")
