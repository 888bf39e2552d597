"""Use cases of the auth service, each one unit of work."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Literal, ParamSpec, TypeVar

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from auth.domain import LoginPolicy, as_utc, check_new_password, valid_email
from auth.models import LoginFailure, RefreshToken, User
from auth.passwords import HashingBusy, HashingQueue, Passwords
from auth.tokens import TokenIssuer, new_refresh_token, refresh_token_hash
from shopkit.auth import ADMIN, CUSTOMER
from shopkit.problems import Conflict, ServiceUnavailable, Unauthenticated
from shopkit.uow import UnitOfWork

log = logging.getLogger("auth.service")

BAD_REFRESH_TOKEN = "the refresh token is invalid, expired or revoked"
HASHING_BUSY = "too many logins at once; try again shortly"


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Security:
    """What the use cases need besides the database: hashing (and its queue), signing, the login policy
    and the clock the policy reads (tests move it instead of the rows)."""

    passwords: Passwords
    hashing: HashingQueue
    tokens: TokenIssuer
    refresh_ttl: timedelta
    policy: LoginPolicy
    # Logins and registrations starting their database work at once (see in_database).
    database_turns: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(4))
    clock: Callable[[], datetime] = field(default=_now)


@dataclass(frozen=True)
class IssuedTokens:
    access_token: str
    refresh_token: str
    expires_in: int


P = ParamSpec("P")
T = TypeVar("T")


async def in_database(security: Security, work: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """`work` (a short transaction of a login or a registration) in the threadpool, a few at a time: a
    burst of them leaves the threads and connections of the pool to every other request. (A login's
    last transaction, after its hash, goes straight to the pool: hashing already paces those.)"""
    async with security.database_turns:
        return await run_in_threadpool(work, *args, **kwargs)


def hashing_busy(retry_after: int) -> ServiceUnavailable:
    return ServiceUnavailable(HASHING_BUSY, headers={"Retry-After": str(retry_after)})


async def hash_new_password(security: Security, password: str) -> str:
    """The hash of a new password, through the bounded queue (503 when it is saturated)."""
    try:
        return await security.hashing.run(security.passwords.hash, password)
    except HashingBusy as busy:
        raise hashing_busy(busy.retry_after) from None


def register(uow: UnitOfWork, *, email: str, password_hash: str, full_name: str) -> User:
    """`email` as RegisterRequest validated it; `password_hash` made beforehand, outside any transaction
    (argon2 is slow: a connection held across it is one every other request waits for)."""
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
    issued = issue_tokens(session, security, user, family_id=token.family_id, now=now)
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


def issue_tokens(
    session: Session, security: Security, user: User, *, family_id: uuid.UUID, now: datetime
) -> IssuedTokens:
    """A new access token, and a refresh token of `family_id` added to the session (not committed)."""
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
