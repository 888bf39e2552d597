"""Use cases of the auth service, each one unit of work."""

from __future__ import annotations

import hashlib
import logging
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

from sqlalchemy import delete, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from auth.domain import as_utc, canonical_email, check_new_password, login_retry_after, valid_email
from auth.models import LoginFailure, RefreshToken, User
from auth.passwords import Passwords
from auth.tokens import TokenIssuer, new_refresh_token, refresh_token_hash
from shopkit.auth import ADMIN, CUSTOMER
from shopkit.problems import Conflict, TooManyRequests, Unauthenticated
from shopkit.uow import UnitOfWork

log = logging.getLogger("auth.service")

WRONG_CREDENTIALS = "the email or password is wrong"
BAD_REFRESH_TOKEN = "the refresh token is invalid, expired or revoked"


@dataclass(frozen=True)
class Security:
    """What the use cases need besides the database: hashing, signing and the login policy."""

    passwords: Passwords
    tokens: TokenIssuer
    refresh_ttl: timedelta
    max_login_failures: int
    login_window: timedelta


@dataclass(frozen=True)
class IssuedTokens:
    access_token: str
    refresh_token: str
    expires_in: int


def _now() -> datetime:
    return datetime.now(UTC)


def register(uow: UnitOfWork, passwords: Passwords, *, email: str, password: str, full_name: str) -> User:
    """`email` and `password` as RegisterRequest validated them."""
    password_hash = passwords.hash(password)  # before the transaction: it is slow
    session = uow.session
    if session.scalar(select(User.id).where(User.email == email)) is not None:
        raise Conflict("an account with this email already exists")
    now = _now()
    user = User(
        id=uuid.uuid4(),
        email=email,
        password_hash=password_hash,
        full_name=full_name,
        role=CUSTOMER,
        created_at=now,
        updated_at=now,
    )
    session.add(user)
    try:
        uow.commit()
    except IntegrityError as exc:  # a concurrent registration of the same email won the race
        uow.rollback()
        raise Conflict("an account with this email already exists") from exc
    log.info("user registered", extra={"user_id": str(user.id)})
    return user


def login(uow: UnitOfWork, security: Security, *, email: str, password: str) -> IssuedTokens:
    email = canonical_email(email)
    session = uow.session
    _serialise_logins_of(session, email)
    now = _now()  # after the wait for the lock: the failure count is read as of now
    failures = session.scalars(
        select(LoginFailure.failed_at).where(
            LoginFailure.email == email, LoginFailure.failed_at > now - security.login_window
        )
    ).all()
    retry_after = login_retry_after(
        failures, now=now, max_failures=security.max_login_failures, window=security.login_window
    )
    if retry_after is not None:
        raise TooManyRequests(
            "too many failed logins for this account; try again later",
            headers={"Retry-After": str(retry_after)},
        )
    user = session.scalar(select(User).where(User.email == email))
    # An unknown email is checked against a decoy hash: the same argon2 work, the same answer.
    matches = security.passwords.verify(user.password_hash if user else None, password)
    if user is None or not matches:
        session.add(LoginFailure(id=uuid.uuid4(), email=email, failed_at=now))
        uow.commit()
        log.info("login failed", extra={"email": email})
        raise Unauthenticated(WRONG_CREDENTIALS)
    if security.passwords.needs_rehash(user.password_hash):
        user.password_hash = security.passwords.hash(password)
        user.updated_at = now
    session.execute(delete(LoginFailure).where(LoginFailure.email == email))
    issued = _issue_tokens(session, security, user, family_id=uuid.uuid4(), now=now)
    uow.commit()
    return issued


def _serialise_logins_of(session: Session, email: str) -> None:
    """Concurrent logins for one email take turns, so that no burst of parallel guesses slips past the
    failure count. PostgreSQL: a transaction-scoped advisory lock; SQLite serialises every writing
    transaction already (BEGIN IMMEDIATE)."""
    if session.get_bind().dialect.name == "postgresql":
        key = int.from_bytes(hashlib.sha256(f"login:{email}".encode()).digest()[:8], "big", signed=True)
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})


def refresh(uow: UnitOfWork, security: Security, *, refresh_token: str) -> IssuedTokens:
    session = uow.session
    now = _now()
    # FOR UPDATE: two refreshes racing with one token are told apart as a rotation and a replay.
    token = session.scalar(
        select(RefreshToken).where(RefreshToken.token_hash == refresh_token_hash(refresh_token)).with_for_update()
    )
    if token is None or token.revoked_at is not None or as_utc(token.expires_at) <= now:
        raise Unauthenticated(BAD_REFRESH_TOKEN)
    if token.used_at is not None:
        # A rotated token came back: someone holds a copy. End the whole session, the thief's and ours.
        _revoke_family(session, token.family_id, now)
        uow.commit()
        log.warning(
            "refresh token replayed; family revoked",
            extra={"user_id": str(token.user_id), "family_id": str(token.family_id)},
        )
        raise Unauthenticated(BAD_REFRESH_TOKEN)
    user = session.get(User, token.user_id)
    if user is None:
        raise Unauthenticated(BAD_REFRESH_TOKEN)
    token.used_at = now
    issued = _issue_tokens(session, security, user, family_id=token.family_id, now=now)
    uow.commit()
    return issued


def logout(uow: UnitOfWork, *, refresh_token: str) -> None:
    """Ends the session the token belongs to. An unknown token is no error: the caller is logged out."""
    session = uow.session
    family_id = session.scalar(
        select(RefreshToken.family_id).where(RefreshToken.token_hash == refresh_token_hash(refresh_token))
    )
    if family_id is not None:
        _revoke_family(session, family_id, _now())
        uow.commit()


def get_user(uow: UnitOfWork, user_id: uuid.UUID) -> User:
    user = uow.session.get(User, user_id)
    if user is None:
        raise Unauthenticated("the account no longer exists")
    return user


AdminOutcome = Literal["created", "promoted", "unchanged"]


def ensure_admin(
    uow: UnitOfWork, passwords: Passwords, *, email: str, password: str, full_name: str = "Shop admin"
) -> AdminOutcome:
    """Make sure `email` is an admin: create the account, or promote an existing one (its password
    stays as it is: start-up must not undo a password its owner has since changed)."""
    email = valid_email(email)
    check_new_password(password)
    session = uow.session
    user = session.scalar(select(User).where(User.email == email))
    now = _now()
    if user is not None:
        if user.role == ADMIN:
            return "unchanged"
        user.role = ADMIN
        user.updated_at = now
        uow.commit()
        return "promoted"
    password_hash = passwords.hash(password)
    session.add(
        User(
            id=uuid.uuid4(),
            email=email,
            password_hash=password_hash,
            full_name=full_name,
            role=ADMIN,
            created_at=now,
            updated_at=now,
        )
    )
    try:
        uow.commit()
    except IntegrityError:  # another replica starting at the same moment created it
        uow.rollback()
        return ensure_admin(uow, passwords, email=email, password=password, full_name=full_name)
    return "created"


def prune_expired(uow: UnitOfWork, *, login_window: timedelta) -> tuple[int, int]:
    """Forget failures that no longer count and refresh tokens that can no longer be used, so that
    neither table grows with every sprayed email or abandoned session. Returns what went, per table."""
    now = _now()
    failures = uow.session.execute(delete(LoginFailure).where(LoginFailure.failed_at <= now - login_window))
    tokens = uow.session.execute(delete(RefreshToken).where(RefreshToken.expires_at <= now))
    uow.commit()
    return failures.rowcount or 0, tokens.rowcount or 0  # type: ignore[attr-defined]


def _issue_tokens(
    session: Session, security: Security, user: User, *, family_id: uuid.UUID, now: datetime
) -> IssuedTokens:
    refresh_token = new_refresh_token()
    session.add(
        RefreshToken(
            id=uuid.uuid4(),
            token_hash=refresh_token_hash(refresh_token),
            family_id=family_id,
            user_id=user.id,
            issued_at=now,
            expires_at=now + security.refresh_ttl,
        )
    )
    return IssuedTokens(
        access_token=security.tokens.access_token(user.id, user.role, now=now),
        refresh_token=refresh_token,
        expires_in=int(security.tokens.ttl.total_seconds()),
    )


def _revoke_family(session: Session, family_id: uuid.UUID, now: datetime) -> None:
    session.execute(
        update(RefreshToken)
        .where(RefreshToken.family_id == family_id, RefreshToken.revoked_at.is_(None))
        .values(revoked_at=now)
    )
