"""Random identifiers in the providers' alphabets, cheap enough for every request.

`secrets.choice` per character costs a system call each: a 58-character Checkout Session id took
more CPU than the rest of the request. One `os.urandom` read mapped through a translation table
costs a microsecond; the slight bias (256 is not a multiple of the alphabet's size) is irrelevant
for ids that only need to be unguessable.
"""

from __future__ import annotations

import os
import string

ALPHANUMERIC = string.ascii_letters + string.digits
UPPER_ALPHANUMERIC = string.ascii_uppercase + string.digits


def _table(alphabet: str) -> bytes:
    return bytes(ord(alphabet[value % len(alphabet)]) for value in range(256))


_TABLES = {alphabet: _table(alphabet) for alphabet in (ALPHANUMERIC, UPPER_ALPHANUMERIC)}


def random_string(length: int, alphabet: str = ALPHANUMERIC) -> str:
    table = _TABLES.get(alphabet) or _TABLES.setdefault(alphabet, _table(alphabet))
    return os.urandom(length).translate(table).decode("ascii")
