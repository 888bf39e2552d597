"""Rules of the auth service, with no I/O: what an email and a password must look like, when repeated
failures lock a login, and how much failures elsewhere slow it down."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import NamedTuple

MIN_PASSWORD_LENGTH = 8
# argon2 pre-hashes any length, but an unbounded password is free CPU for an attacker.
MAX_PASSWORD_LENGTH = 1024
MAX_EMAIL_LENGTH = 320

# Deliberately loose (one @, a dot in the domain, no spaces): the real check is whether mail arrives.
# White space spelled out (what str.strip removes): regex engines disagree on what `\s` covers.
_SPACE = r"\t\n\x0b\x0c\r\x1c-\x20\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
_NOT_IN_EMAIL = rf"@{_SPACE}\x00-\x1f\x7f"
_EMAIL_BODY = rf"[^{_NOT_IN_EMAIL}]+@[^.{_NOT_IN_EMAIL}]+(\.[^.{_NOT_IN_EMAIL}]+)+"
_EMAIL = re.compile(rf"^{_EMAIL_BODY}$")
# What valid_email accepts before canonical_email strips it: the pattern the API's schema shows.
EMAIL_PATTERN = rf"^[{_SPACE}]*{_EMAIL_BODY}[{_SPACE}]*$"


class InvalidCredentialsFormat(ValueError):
    """An email or password that breaks the rules above."""


def canonical_email(email: str) -> str:
    """The one spelling an email is stored and looked up under: `A@B.com` and `a@b.com` are one user."""
    return email.strip().lower()


def valid_email(email: str) -> str:
    canonical = canonical_email(email)
    if len(canonical) > MAX_EMAIL_LENGTH or not _EMAIL.match(canonical):
        raise InvalidCredentialsFormat("not a valid email address")
    return canonical


def check_new_password(password: str) -> str:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise InvalidCredentialsFormat(f"the password needs at least {MIN_PASSWORD_LENGTH} characters")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise InvalidCredentialsFormat(f"the password may have at most {MAX_PASSWORD_LENGTH} characters")
    return password


def as_utc(moment: datetime) -> datetime:
    """SQLite hands back naive datetimes; everything this service stores is UTC."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


class PairAttempt(NamedTuple):
    """One recorded attempt of a pair: when, and whether its password is still being checked."""

    at: datetime
    checking: bool


@dataclass(frozen=True)
class Admission:
    """May a pair's attempt have its password checked now?"""

    # Locked: the seconds until the window lets the pair in again.
    retry_after: int | None = None
    # Not locked, but every try the pair has left is being checked right now: ask again shortly.
    wait: bool = False

    @property
    def admitted(self) -> bool:
        return self.retry_after is None and not self.wait


@dataclass(frozen=True)
class LoginPolicy:
    """How failed logins are throttled.

    Failures count per pair of account and client address: the pair that failed `max_failures` times
    within `window` is locked (429) until the window lets it in again, whatever the password. Failures of
    the account from *other* addresses never lock it; past `max_failures` of them each attempt waits
    `slowdown_step` seconds, doubling with every further failure, up to `slowdown_max`: a guesser spread
    over many addresses is slowed, the owner is at worst a second late.

    Attempts whose password is being checked hold one of the pair's remaining tries each, so that
    concurrent guesses cannot all be checked on the strength of one count; an attempt finding every
    remaining try held waits for them (it is not refused: none of them has failed yet). One still
    checking after `check_timeout` was cut short (its process died) and counts as a failure."""

    max_failures: int = 5
    window: timedelta = timedelta(minutes=15)
    slowdown_step: float = 0.05
    slowdown_max: float = 1.0
    check_timeout: timedelta = timedelta(minutes=1)

    def retry_after(self, pair_failures: Sequence[datetime], *, now: datetime) -> int | None:
        return login_retry_after(pair_failures, now=now, max_failures=self.max_failures, window=self.window)

    def admit(self, pair_attempts: Sequence[PairAttempt], *, now: datetime) -> Admission:
        recent = [(as_utc(at), checking) for at, checking in pair_attempts if as_utc(at) > now - self.window]
        failures = [at for at, checking in recent if not checking or self.check_abandoned(at, now=now)]
        retry_after = self.retry_after(failures, now=now)
        if retry_after is not None:
            return Admission(retry_after=retry_after)
        if len(recent) >= self.max_failures:
            return Admission(wait=True)
        return Admission()

    def check_abandoned(self, started_at: datetime, *, now: datetime) -> bool:
        return as_utc(started_at) <= now - self.check_timeout

    def slowdown(self, failures_elsewhere: int) -> float:
        """Seconds an attempt waits, given the account's failures from other addresses in the window."""
        beyond = failures_elsewhere - self.max_failures
        if beyond < 0 or self.slowdown_step <= 0:
            return 0.0
        # Capped before the power, so that a huge count cannot overflow the float.
        return min(self.slowdown_max, self.slowdown_step * 2.0 ** min(beyond, 64))

    @property
    def slowdown_saturates_at(self) -> int:
        """The count of failures elsewhere past which the slowdown no longer grows: counting beyond it
        is wasted work."""
        if self.slowdown_step <= 0 or self.slowdown_max <= self.slowdown_step:
            return self.max_failures + 1
        return self.max_failures + math.ceil(math.log2(self.slowdown_max / self.slowdown_step)) + 1


def login_retry_after(
    failures: Sequence[datetime], *, now: datetime, max_failures: int, window: timedelta
) -> int | None:
    """Seconds until this pair (account, address) may try again, or None when it may try now.

    Locked while `max_failures` failures fall within the last `window`; the lock lifts when the
    oldest of the latest `max_failures` failures leaves the window."""
    recent = sorted(as_utc(f) for f in failures if as_utc(f) > now - window)
    if len(recent) < max_failures:
        return None
    unlocks_at = recent[-max_failures] + window
    return max(1, math.ceil((unlocks_at - now).total_seconds()))
