"""Production users, their invitations, and the log of every move of personal data.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = '0002'
down_revision: str | None = '0001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('user_data_events',
    sa.Column('id', sa.BigInteger(), sa.Identity(always=True), nullable=False),
    sa.Column('occurred_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('event', sa.String(length=16), nullable=False),
    sa.Column('environment', sa.String(length=32), nullable=False),
    sa.Column('user_id', sa.UUID(), nullable=True),
    sa.Column('username', sa.String(length=64), nullable=True),
    sa.Column('username_sha256', sa.String(length=64), nullable=True),
    sa.Column('actor', sa.String(length=64), nullable=False),
    sa.Column('source_environment', sa.String(length=32), nullable=True),
    sa.Column('source', sa.Text(), nullable=True),
    sa.Column('checksum', sa.String(length=64), nullable=True),
    sa.Column('details', postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'{}'::jsonb"), nullable=False),
    sa.CheckConstraint("event IN ('migrate', 'export', 'import', 'delete', 'invite', 'accept')", name=op.f('ck_user_data_events_event')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_user_data_events'))
    )
    op.create_index(op.f('ix_user_data_events_user_id'), 'user_data_events', ['user_id'], unique=False)
    op.create_index(op.f('ix_user_data_events_username'), 'user_data_events', ['username'], unique=False)
    op.create_table('users',
    sa.Column('id', sa.UUID(), server_default=sa.text('gen_random_uuid()'), nullable=False),
    sa.Column('username', sa.String(length=64), nullable=False),
    sa.Column('email', sa.String(length=254), nullable=False),
    sa.Column('display_name', sa.String(length=200), nullable=True),
    sa.Column('password_hash', sa.Text(), nullable=True),
    sa.Column('preferences', postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'{}'::jsonb"), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_users')),
    sa.UniqueConstraint('email', name=op.f('uq_users_email')),
    sa.UniqueConstraint('username', name=op.f('uq_users_username'))
    )
    op.create_table('user_invitations',
    sa.Column('id', sa.UUID(), server_default=sa.text('gen_random_uuid()'), nullable=False),
    sa.Column('user_id', sa.UUID(), nullable=False),
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('used_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_user_invitations_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_user_invitations')),
    sa.UniqueConstraint('token_hash', name=op.f('uq_user_invitations_token_hash'))
    )
    op.create_index(op.f('ix_user_invitations_user_id'), 'user_invitations', ['user_id'], unique=False)
    # Every change to a user's row moves updated_at, whoever makes it: the context cache relies on it.
    op.execute(
        "CREATE FUNCTION piper_touch_updated_at() RETURNS trigger LANGUAGE plpgsql AS "
        "$$ BEGIN NEW.updated_at := clock_timestamp(); RETURN NEW; END $$"
    )
    for table in ("alpha_users", "users"):
        op.execute(f"CREATE TRIGGER {table}_touch_updated_at BEFORE UPDATE ON {table} "
                   "FOR EACH ROW EXECUTE FUNCTION piper_touch_updated_at()")


def downgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS alpha_users_touch_updated_at ON alpha_users")
    op.execute("DROP TRIGGER IF EXISTS users_touch_updated_at ON users")
    op.execute("DROP FUNCTION IF EXISTS piper_touch_updated_at()")
    op.drop_index(op.f('ix_user_invitations_user_id'), table_name='user_invitations')
    op.drop_table('user_invitations')
    op.drop_table('users')
    op.drop_index(op.f('ix_user_data_events_username'), table_name='user_data_events')
    op.drop_index(op.f('ix_user_data_events_user_id'), table_name='user_data_events')
    op.drop_table('user_data_events')
