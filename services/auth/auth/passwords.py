"""argon2id password hashes. Clear-text passwords go in here and never come out."""

from __future__ import annotations

import secrets
import threading

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

# OWASP's argon2id baseline (19 MiB, 2 passes, 1 lane). argon2-cffi's default takes 64 MiB per hash,
# which with a threadpool of concurrent logins pushes the process past its memory budget.
DEFAULT_HASHER = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)
# Hashing is CPU- and memory-bound: more at once than there are cores only queues inside argon2 and
# multiplies memory; a burst of logins waits here instead.
_HASHING_SLOTS = threading.BoundedSemaphore(2)


class Passwords:
    def __init__(self, hasher: PasswordHasher | None = None) -> None:
        self._hasher = hasher or DEFAULT_HASHER
        # Checked when the email is unknown, so a miss costs the same argon2 work as a wrong password
        # and the answer time does not tell which emails have accounts.
        self._decoy = self._hasher.hash(secrets.token_urlsafe(16))

    def hash(self, password: str) -> str:
        with _HASHING_SLOTS:
            return self._hasher.hash(password)

    def verify(self, stored_hash: str | None, password: str) -> bool:
        try:
            with _HASHING_SLOTS:
                matches = self._hasher.verify(stored_hash or self._decoy, password)
        except (VerificationError, InvalidHashError):
            return False
        return matches and stored_hash is not None

    def needs_rehash(self, stored_hash: str) -> bool:
        return self._hasher.check_needs_rehash(stored_hash)
