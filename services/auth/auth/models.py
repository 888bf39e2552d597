"""Tables of the auth schema."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import Boolean, DateTime, ForeignKey, Index, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from shopkit.db import GUID


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "users"

    id: Mapped[uuid.UUID] = mapped_column(GUID(), primary_key=True, default=uuid.uuid4)
    # Always stored lower-cased (domain.canonical_email), so the unique index is case-insensitive.
    email: Mapped[str] = mapped_column(String(320), unique=True, nullable=False)
    password_hash: Mapped[str] = mapped_column(String(255), nullable=False)
    full_name: Mapped[str] = mapped_column(String(200), nullable=False)
    role: Mapped[str] = mapped_column(String(20), nullable=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)


class RefreshToken(Base):
    """One issued refresh token. Only its SHA-256 is kept: a leaked table cannot be replayed. Every
    token descends from one login (its family); reuse of a rotated token revokes the family."""

    __tablename__ = "refresh_tokens"

    id: Mapped[uuid.UUID] = mapped_column(GUID(), primary_key=True, default=uuid.uuid4)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True, nullable=False)
    family_id: Mapped[uuid.UUID] = mapped_column(GUID(), nullable=False, index=True)
    user_id: Mapped[uuid.UUID] = mapped_column(GUID(), ForeignKey("users.id"), nullable=False, index=True)
    issued_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class LoginFailure(Base):
    """A failed login of one email from one client address, kept in the database so that every replica
    counts the same failures; or, while `checking`, an attempt whose password is being checked now.

    An attempt is written here (checking, under a per-pair lock) *before* its password is checked, and
    holds one of the pair's remaining tries until the check ends: concurrent guesses cannot all read
    "4 failures" while their hashes run. A failure then clears `checking`, a success deletes its pair's
    rows. An attempt cut short by a crash stays behind as a failure (auth.domain.LoginPolicy), never a
    free guess."""

    __tablename__ = "login_failures"
    __table_args__ = (Index("ix_login_failures_email_address_failed_at", "email", "client_address", "failed_at"),)

    id: Mapped[uuid.UUID] = mapped_column(GUID(), primary_key=True, default=uuid.uuid4)
    email: Mapped[str] = mapped_column(String(320), nullable=False)
    # auth.client_address.client_address: the gateway's idea of the client, an IPv6 client as its /64.
    client_address: Mapped[str] = mapped_column(String(64), nullable=False)
    # When it failed; while checking, when the check began.
    failed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    checking: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
