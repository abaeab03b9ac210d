"""Table schemas (SQLAlchemy 2 typed models). Alembic revisions in migrations/ build them.

A test compares these models with the migrated database (`alembic check`), so the two cannot drift.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Identity,
    MetaData,
    String,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

uuid_pk = Annotated[uuid.UUID, mapped_column(UUID(as_uuid=True), primary_key=True, server_default=text("gen_random_uuid()"))]
created_at = Annotated[datetime, mapped_column(DateTime(timezone=True), nullable=False, server_default=func.now())]
updated_at = Annotated[
    datetime, mapped_column(DateTime(timezone=True), nullable=False, server_default=func.now(), onupdate=func.now())
]
json_object = Annotated[dict[str, Any], mapped_column(JSONB, nullable=False, server_default=text("'{}'::jsonb"))]


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class PiperMetadata(Base):
    """Key/value facts about the database itself; key 'environment' is the environment stamp.

    Like Rails' ar_internal_metadata: a database knows which environment it belongs to, and every
    command refuses a database stamped for another environment than the one it was asked to use.
    """

    __tablename__ = "piper_metadata"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text, nullable=False)
    created_at: Mapped[created_at]
    updated_at: Mapped[updated_at]


class AlphaUser(Base):
    """A user of a local (alpha) environment; personal data lives only in `preferences`."""

    __tablename__ = "alpha_users"

    id: Mapped[uuid_pk]
    username: Mapped[str] = mapped_column(String(64), unique=True, nullable=False)
    email: Mapped[str] = mapped_column(String(254), unique=True, nullable=False)
    display_name: Mapped[str | None] = mapped_column(String(200))
    password_hash: Mapped[str | None] = mapped_column(Text)
    is_active: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default=text("true"))
    is_verified: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default=text("false"))
    alpha_wave: Mapped[int | None]
    created_at: Mapped[created_at]
    updated_at: Mapped[updated_at]
    migrated_to_prod: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default=text("false"))
    migration_date: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    preferences: Mapped[json_object]
    learning_data: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    notes: Mapped[str | None] = mapped_column(Text)


class User(Base):
    """A user of the hosted production environment (ADR-040 "Migration Path: Alpha → Production").

    Rows arrive only through an explicit, consented import; the password is set by the user
    through a single-use invitation.
    """

    __tablename__ = "users"

    id: Mapped[uuid_pk]
    username: Mapped[str] = mapped_column(String(64), unique=True, nullable=False)
    email: Mapped[str] = mapped_column(String(254), unique=True, nullable=False)
    display_name: Mapped[str | None] = mapped_column(String(200))
    password_hash: Mapped[str | None] = mapped_column(Text)
    preferences: Mapped[json_object]
    created_at: Mapped[created_at]
    updated_at: Mapped[updated_at]


class UserInvitation(Base):
    """A single-use, expiring invitation to set a production password; only its hash is stored."""

    __tablename__ = "user_invitations"

    id: Mapped[uuid_pk]
    user_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True
    )
    token_hash: Mapped[str] = mapped_column(String(64), unique=True, nullable=False)
    created_at: Mapped[created_at]
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class UserDataEvent(Base):
    """The record of every move of personal data: migrations, exports, imports, deletions.

    It holds who, when, from where and a checksum; never the personal data itself. A deletion
    keeps only the user's id and a hash of the username.
    """

    __tablename__ = "user_data_events"

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=True), primary_key=True)
    occurred_at: Mapped[created_at]
    event: Mapped[str] = mapped_column(String(16), nullable=False)
    environment: Mapped[str] = mapped_column(String(32), nullable=False)
    user_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True), index=True)
    username: Mapped[str | None] = mapped_column(String(64), index=True)
    username_sha256: Mapped[str | None] = mapped_column(String(64))
    actor: Mapped[str] = mapped_column(String(64), nullable=False)
    source_environment: Mapped[str | None] = mapped_column(String(32))
    source: Mapped[str | None] = mapped_column(Text)
    checksum: Mapped[str | None] = mapped_column(String(64))
    details: Mapped[json_object]

    __table_args__ = (
        CheckConstraint("event IN ('migrate', 'export', 'import', 'delete', 'invite', 'accept')", name="event"),
    )
