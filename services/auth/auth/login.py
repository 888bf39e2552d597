"""The login use case: failures throttled per (account, client address), the password checked outside
any transaction.

A login is short steps, never one long one:
1. `begin_check`, one short transaction: refuse a locked pair (429); otherwise write the attempt down as
   being checked, which holds one of the pair's remaining tries, and read the stored hash. Attempts of
   one pair take turns here (and only here), so no burst of parallel guesses slips past the count; an
   attempt finding all of the pair's tries held asks again shortly, holding nothing meanwhile. (An
   attacker hammering a locked pair queues only behind its own attempts: the owner, from another
   address, is another pair; from the same address the pair is locked for the owner too.)
2. Outside any transaction, holding no connection, lock or thread: wait out the slowdown that failures
   from other addresses earned (out of the hashing line too), then verify the hash in the bounded
   HashingQueue.
3. One short transaction records the outcome: `record_failure`, or `record_success` (the pair's failures
   go, a refresh token is stored). A check the queue refused is withdrawn (`withdraw_check`): nothing
   was checked, so nothing counts.
A login takes its place in the hashing line on arrival (HashingQueue.ticket): the line is bounded, and
all its waiting, for the pair's turn as for a hashing slot, fits in one budget (password_hash_max_wait)
from arrival; past either, 503 with Retry-After, never a hang.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, delete, func, insert, or_, select, text, update
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from auth.domain import Admission, LoginPolicy, PairAttempt, canonical_email
from auth.models import LoginFailure, User
from auth.passwords import HashingBusy, Ticket
from auth.service import IssuedTokens, Security, hashing_busy, in_database, issue_tokens
from shopkit.problems import TooManyRequests, Unauthenticated
from shopkit.uow import UnitOfWork

log = logging.getLogger("auth.login")

WRONG_CREDENTIALS = "the email or password is wrong"
LOCKED = "too many failed logins for this account from this address; try again later"
# How often an attempt whose pair has every try held looks again: about one hash.
PAIR_POLL_INTERVAL = 0.05


@dataclass(frozen=True)
class Check:
    """A login admitted to have its password checked, holding one of its pair's tries until recorded."""

    id: uuid.UUID
    email: str
    address: str
    user_id: uuid.UUID | None
    password_hash: str | None  # None: no such account; the decoy hash is checked instead
    slowdown: float


async def login(uow: UnitOfWork, security: Security, *, email: str, password: str, address: str) -> IssuedTokens:
    """`address` as auth.client_address.client_address decided it."""
    email = canonical_email(email)
    try:
        # In line from arrival: the line bounds the database work before the hashes, and the ticket's
        # deadline the whole wait, for the pair's turn as for a hashing slot.
        ticket = security.hashing.ticket()
    except HashingBusy as busy:
        raise hashing_busy(busy.retry_after) from None
    with ticket:
        check = await _admitted(uow, security, email=email, address=address, ticket=ticket)
        try:
            if check.slowdown:
                await ticket.step_aside(slow_down(check.slowdown))
            matches = await ticket.run(security.passwords.verify, check.password_hash, password)
        except HashingBusy as busy:
            await in_database(security, withdraw_check, uow, check)
            raise hashing_busy(busy.retry_after) from None
    if not matches or check.password_hash is None:
        await run_in_threadpool(record_failure, uow, check, now=security.clock())
        log.info("login failed", extra={"email": email, "client_address": address})
        raise Unauthenticated(WRONG_CREDENTIALS)
    new_hash = await _rehash(security, check.password_hash, password)
    return await run_in_threadpool(record_success, uow, security, check, new_hash=new_hash, now=security.clock())


async def slow_down(seconds: float) -> None:
    """Awaited in the event loop, out of the hashing line: a slowed-down login holds no thread, no
    connection and no place in line meanwhile (else a guesser spread over many addresses would fill the
    line that every account's logins share, just by being slowed down)."""
    await asyncio.sleep(seconds)


async def _admitted(uow: UnitOfWork, security: Security, *, email: str, address: str, ticket: Ticket) -> Check:
    while True:
        # The budget may go waiting for the pair or for a turn at the database: then no transaction.
        if ticket.expired:
            raise hashing_busy(security.hashing.retry_after)
        try:
            async with asyncio.timeout(ticket.remaining):
                await security.database_turns.acquire()
        except TimeoutError:
            raise hashing_busy(security.hashing.retry_after) from None
        try:
            begun = await run_in_threadpool(
                begin_check, uow, security.policy, email=email, address=address, now=security.clock()
            )
        finally:
            security.database_turns.release()
        if isinstance(begun, Check):
            return begun
        if begun.retry_after is not None:
            raise TooManyRequests(LOCKED, headers={"Retry-After": str(begun.retry_after)})
        # Every try the pair has left is being checked right now; one of them ends within about a hash.
        await asyncio.sleep(PAIR_POLL_INTERVAL)


def begin_check(uow: UnitOfWork, policy: LoginPolicy, *, email: str, address: str, now: datetime) -> Check | Admission:
    """Step 1, one short transaction: the check, committed as holding one of the pair's tries; or, when
    the pair may not be checked now, why not (and nothing written)."""
    session = uow.session
    _take_the_pairs_turn(session, email, address)
    admission = policy.admit(_pair_attempts(session, policy, email, address, now), now=now)
    if not admission.admitted:
        uow.rollback()
        return admission
    elsewhere, user_id, password_hash = _account(session, policy, email, address, now)
    check_id = uuid.uuid4()
    session.execute(
        insert(LoginFailure).values(id=check_id, email=email, client_address=address, failed_at=now, checking=True)
    )
    uow.commit()
    return Check(
        id=check_id,
        email=email,
        address=address,
        user_id=user_id,
        password_hash=password_hash,
        slowdown=policy.slowdown(elsewhere),
    )


def record_failure(uow: UnitOfWork, check: Check, *, now: datetime) -> None:
    _no_wait_for_the_disk(uow.session)
    uow.session.execute(update(LoginFailure).where(LoginFailure.id == check.id).values(checking=False, failed_at=now))
    uow.commit()


def withdraw_check(uow: UnitOfWork, check: Check) -> None:
    _no_wait_for_the_disk(uow.session)
    uow.session.execute(delete(LoginFailure).where(LoginFailure.id == check.id))
    uow.commit()


def record_success(
    uow: UnitOfWork, security: Security, check: Check, *, new_hash: str | None, now: datetime
) -> IssuedTokens:
    """Step 3 of a login whose password matched: the pair starts afresh, a session is issued."""
    session = uow.session
    user = session.get(User, check.user_id)
    if user is None:  # deleted while its password was being checked
        withdraw_check(uow, check)
        raise Unauthenticated(WRONG_CREDENTIALS)
    if new_hash is not None:
        user.password_hash = new_hash
        user.updated_at = now
    # The pair's failures go with this check; checks of the pair still running stay and count.
    session.execute(
        delete(LoginFailure).where(
            LoginFailure.email == check.email,
            LoginFailure.client_address == check.address,
            or_(LoginFailure.id == check.id, _is_failure(security.policy, now)),
        )
    )
    issued = issue_tokens(session, security, user, family_id=uuid.uuid4(), now=now)
    uow.commit()
    return issued


def _is_failure(policy: LoginPolicy, now: datetime) -> ColumnElement[bool]:
    """SQL for policy.admit's notion of a failure: a finished check, or one abandoned mid-way."""
    return or_(LoginFailure.checking.is_(False), LoginFailure.failed_at <= now - policy.check_timeout)


def _pair_attempts(session: Session, policy: LoginPolicy, email: str, address: str, now: datetime) -> list[PairAttempt]:
    rows = session.execute(
        select(LoginFailure.failed_at, LoginFailure.checking).where(
            LoginFailure.email == email,
            LoginFailure.client_address == address,
            LoginFailure.failed_at > now - policy.window,
        )
    ).all()
    return [PairAttempt(at, checking) for at, checking in rows]


def _account(
    session: Session, policy: LoginPolicy, email: str, address: str, now: datetime
) -> tuple[int, uuid.UUID | None, str | None]:
    """In one round trip: the account's failures from other addresses (counted only as far as the
    slowdown still grows: a sprayed account's rows are not all read), its user id and password hash."""
    elsewhere = (
        select(LoginFailure.id)
        .where(
            LoginFailure.email == email,
            LoginFailure.client_address != address,
            LoginFailure.failed_at > now - policy.window,
            _is_failure(policy, now),
        )
        .limit(policy.slowdown_saturates_at)
        .subquery()
    )
    row = session.execute(
        select(
            select(func.count()).select_from(elsewhere).scalar_subquery(),
            select(User.id).where(User.email == email).scalar_subquery(),
            select(User.password_hash).where(User.email == email).scalar_subquery(),
        )
    ).one()
    return int(row[0] or 0), row[1], row[2]


def _take_the_pairs_turn(session: Session, email: str, address: str) -> None:
    """Attempts of one pair take turns through step 1, across replicas, so each reads every check begun
    before it. PostgreSQL: a transaction-scoped advisory lock, held for a few statements and never
    across a hash (and, in the same round trip, see _no_wait_for_the_disk). SQLite serialises every
    writing transaction already (BEGIN IMMEDIATE)."""
    if session.get_bind().dialect.name == "postgresql":
        digest = hashlib.sha256(f"login:{email}\x00{address}".encode()).digest()
        key = int.from_bytes(digest[:8], "big", signed=True)
        session.execute(text(f"SELECT pg_advisory_xact_lock(:key), {_NO_FLUSH_WAIT}"), {"key": key})


# The function form of SET LOCAL synchronous_commit TO OFF, so that it can share a round trip.
_NO_FLUSH_WAIT = "set_config('synchronous_commit', 'off', true)"


def _no_wait_for_the_disk(session: Session) -> None:
    """This transaction's commit need not wait for its WAL flush (PostgreSQL's synchronous_commit, for
    this transaction only): throttle bookkeeping, written twice per login, where a flush under heavy
    write load takes tens of milliseconds. A database crash may forget its last fraction of a second of
    failures; it never leaves them inconsistent. Issued tokens (record_success) do wait."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text(f"SELECT {_NO_FLUSH_WAIT}"))


async def _rehash(security: Security, stored_hash: str, password: str) -> str | None:
    """A stronger hash when the parameters have been raised since; skipped (kept for the next login)
    when hashing is saturated, as a login must not fail for it."""
    if not security.passwords.needs_rehash(stored_hash):
        return None
    try:
        return await security.hashing.run(security.passwords.hash, password)
    except HashingBusy:
        return None
