"""The login use case: failures throttled per (account, client address), the password checked outside
any transaction.

A login is short steps, never one long one:
1. `charge_attempt`, one short transaction: refuse a locked pair; otherwise write the attempt down as a
   failure before its password is checked, and read the stored hash. Concurrent attempts of one pair
   take turns here (and only here), so no burst of parallel guesses slips past the count.
2. Outside any transaction, holding no connection, lock or thread: wait out the slowdown that failures
   from other addresses earned, then verify the hash in the bounded HashingQueue.
3. A failure needs nothing more (step 1 already counted it). A success runs `record_success`, one short
   transaction: the pair's failures go, a refresh token is stored.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, func, select, text
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from auth.domain import LoginPolicy, canonical_email
from auth.models import LoginFailure, User
from auth.passwords import HashingBusy
from auth.service import IssuedTokens, Security, hashing_busy, issue_tokens
from shopkit.db import UnitOfWork
from shopkit.problems import TooManyRequests, Unauthenticated

log = logging.getLogger("auth.login")

WRONG_CREDENTIALS = "the email or password is wrong"
LOCKED = "too many failed logins for this account from this address; try again later"


@dataclass(frozen=True)
class Attempt:
    """A login charged as a failure, waiting for its password to be checked."""

    id: uuid.UUID
    email: str
    address: str
    user_id: uuid.UUID | None
    password_hash: str | None  # None: no such account; the decoy hash is checked instead
    slowdown: float


async def login(uow: UnitOfWork, security: Security, *, email: str, password: str, address: str) -> IssuedTokens:
    """`address` as auth.client_address.client_address decided it."""
    email = canonical_email(email)
    if security.hashing.saturated:  # shed before any database work: the answer would be 503 anyway
        raise hashing_busy(security.hashing.retry_after)
    charged = await run_in_threadpool(
        charge_attempt, uow, security.policy, email=email, address=address, now=security.clock()
    )
    if isinstance(charged, int):
        raise TooManyRequests(LOCKED, headers={"Retry-After": str(charged)})
    if charged.slowdown:
        await slow_down(charged.slowdown)
    try:
        matches = await security.hashing.run(security.passwords.verify, charged.password_hash, password)
    except HashingBusy as busy:
        # Nothing was checked: the attempt does not count against the pair.
        await run_in_threadpool(refund_attempt, uow, charged)
        raise hashing_busy(busy.retry_after) from None
    if not matches or charged.password_hash is None:
        log.info("login failed", extra={"email": email, "client_address": address})
        raise Unauthenticated(WRONG_CREDENTIALS)
    new_hash = await _rehash(security, charged.password_hash, password)
    return await run_in_threadpool(record_success, uow, security, charged, new_hash=new_hash, now=security.clock())


async def slow_down(seconds: float) -> None:
    """Awaited in the event loop: a slowed-down login holds no thread and no connection meanwhile."""
    await asyncio.sleep(seconds)


def charge_attempt(uow: UnitOfWork, policy: LoginPolicy, *, email: str, address: str, now: datetime) -> Attempt | int:
    """Step 1, one short transaction. The attempt, committed as a failure; or, when the pair is locked,
    the seconds until it may try again (and nothing written)."""
    session = uow.session
    # Read once without the lock: a locked-out pair, an attacker hammering away, is refused without
    # queueing on the lock that its own attempts (and the owner's, from that address) take.
    retry_after = _pair_retry_after(session, policy, email, address, now)
    if retry_after is None:
        _serialise_attempts_of(session, email, address)
        retry_after = _pair_retry_after(session, policy, email, address, now)
    if retry_after is not None:
        uow.rollback()
        return retry_after
    elsewhere = _failures_elsewhere(session, policy, email, address, now)
    user = session.execute(select(User.id, User.password_hash).where(User.email == email)).one_or_none()
    attempt_id = uuid.uuid4()
    session.add(LoginFailure(id=attempt_id, email=email, client_address=address, failed_at=now))
    uow.commit()
    return Attempt(
        id=attempt_id,
        email=email,
        address=address,
        user_id=user.id if user else None,
        password_hash=user.password_hash if user else None,
        slowdown=policy.slowdown(elsewhere),
    )


def refund_attempt(uow: UnitOfWork, attempt: Attempt) -> None:
    uow.session.execute(delete(LoginFailure).where(LoginFailure.id == attempt.id))
    uow.commit()


def record_success(
    uow: UnitOfWork, security: Security, attempt: Attempt, *, new_hash: str | None, now: datetime
) -> IssuedTokens:
    """Step 3 of a login whose password matched: the pair starts afresh, a session is issued."""
    session = uow.session
    user = session.get(User, attempt.user_id)
    if user is None:  # deleted while its password was being checked
        uow.rollback()
        raise Unauthenticated(WRONG_CREDENTIALS)
    if new_hash is not None:
        user.password_hash = new_hash
        user.updated_at = now
    session.execute(
        delete(LoginFailure).where(LoginFailure.email == attempt.email, LoginFailure.client_address == attempt.address)
    )
    issued = issue_tokens(session, security, user, family_id=uuid.uuid4(), now=now)
    uow.commit()
    return issued


def _pair_retry_after(session: Session, policy: LoginPolicy, email: str, address: str, now: datetime) -> int | None:
    failures = session.scalars(
        select(LoginFailure.failed_at).where(
            LoginFailure.email == email,
            LoginFailure.client_address == address,
            LoginFailure.failed_at > now - policy.window,
        )
    ).all()
    return policy.retry_after(failures, now=now)


def _failures_elsewhere(session: Session, policy: LoginPolicy, email: str, address: str, now: datetime) -> int:
    # Counted only as far as the slowdown still grows: a sprayed account's rows are not all read.
    recent = (
        select(LoginFailure.id)
        .where(
            LoginFailure.email == email,
            LoginFailure.client_address != address,
            LoginFailure.failed_at > now - policy.window,
        )
        .limit(policy.slowdown_saturates_at)
        .subquery()
    )
    return int(session.scalar(select(func.count()).select_from(recent)) or 0)


def _serialise_attempts_of(session: Session, email: str, address: str) -> None:
    """Attempts of one pair take turns through step 1, across replicas, so each reads every failure
    charged before it. PostgreSQL: a transaction-scoped advisory lock, held for a few statements and
    never across a hash. SQLite serialises every writing transaction already (BEGIN IMMEDIATE)."""
    if session.get_bind().dialect.name == "postgresql":
        digest = hashlib.sha256(f"login:{email}\x00{address}".encode()).digest()
        session.execute(
            text("SELECT pg_advisory_xact_lock(:key)"), {"key": int.from_bytes(digest[:8], "big", signed=True)}
        )


async def _rehash(security: Security, stored_hash: str, password: str) -> str | None:
    """A stronger hash when the parameters have been raised since; skipped (kept for the next login)
    when hashing is saturated, as a login must not fail for it."""
    if not security.passwords.needs_rehash(stored_hash):
        return None
    try:
        return await security.hashing.run(security.passwords.hash, password)
    except HashingBusy:
        return None
