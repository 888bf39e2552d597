"""Rules of the auth service, with no I/O: what an email and a password must look like, and when
repeated failures lock a login."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

MIN_PASSWORD_LENGTH = 8
# argon2 pre-hashes any length, but an unbounded password is free CPU for an attacker.
MAX_PASSWORD_LENGTH = 1024
MAX_EMAIL_LENGTH = 320

# Deliberately loose (one @, a dot in the domain, no spaces): the real check is whether mail arrives.
_EMAIL = re.compile(r"^[^@\s]+@[^@\s.]+(\.[^@\s.]+)+$")


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


def login_retry_after(
    failures: Sequence[datetime], *, now: datetime, max_failures: int, window: timedelta
) -> int | None:
    """Seconds until this email may try again, or None when it may try now.

    Locked while `max_failures` failures fall within the last `window`; the lock lifts when the
    oldest of the latest `max_failures` failures leaves the window."""
    recent = sorted(as_utc(f) for f in failures if as_utc(f) > now - window)
    if len(recent) < max_failures:
        return None
    unlocks_at = recent[-max_failures] + window
    return max(1, math.ceil((unlocks_at - now).total_seconds()))
