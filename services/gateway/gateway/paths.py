"""The one form of a request's path that the gateway routes, checks and forwards.

The gateway decides on the path decoded once from the raw request target, and forwards the raw
target untouched. That is only safe while every server and client library behind it decodes the
same bytes to the same path: so any spelling that some of them read differently is refused with 400
before routing. Dot segments (a client library or server may resolve `/a/../b` to `/b`, yarl does),
encoded slashes and backslashes (read as separators by some servers), `%25` (a second decoding turns
`%252e` into `.`), `;` (path parameters to some servers: Tomcat reads `/..;/` as `/../`), empty
segments (merged by some proxies), control characters, bytes outside RFC 3986 and invalid UTF-8.
No public route needs any of them: its segments are words, UUIDs, slugs and file names.
"""

from __future__ import annotations

import re
import string
from urllib.parse import quote, unquote_to_bytes

from shopkit.problems import BadRequest

# Raw bytes a path may hold: RFC 3986 pchar and "/", less ";" (see above); "%" starts an escape.
_PATH_BYTES = (string.ascii_letters + string.digits + "-._~!$&'()*+,=:@/%").encode()
# What a percent escape may not stand for besides "/": a backslash, "%", ";" or a control (the raw
# path holds none of them, so finding one decoded means it was escaped).
_DECODED_FORBIDDEN = frozenset(b"\\%;" + bytes(range(0x20)) + b"\x7f")
_DECODED_ALLOWED = bytes(b for b in range(256) if b not in _DECODED_FORBIDDEN)
_BAD_ESCAPE = re.compile(rb"%(?![0-9A-Fa-f]{2})")
# The query string is passed through as sent; only what no public route needs and what would reach
# a service's database as a NUL or a line break is refused.
_QUERY_BYTES = bytes(range(0x21, 0x7F))
_ENCODED_CONTROL = re.compile(rb"%(?:[01][0-9A-Fa-f]|7[Ff])")
# Decoded path -> its raw form, for ASGI servers that give no raw_path (a quoted path decodes back).
_RAW_SAFE = "/-._~!$&'()*+,=:@"


class BadPath(BadRequest):
    def __init__(self, detail: str) -> None:
        super().__init__(f"the request path is refused: {detail}")


def normalise(raw: bytes) -> str:
    """The path `raw` (the request target before `?`, as sent) decodes to, or BadPath."""
    if not raw.startswith(b"/"):
        raise BadPath("it must start with '/'")
    if raw.translate(None, _PATH_BYTES):
        raise BadPath("it holds a character that must not appear in a path (backslash, ';', space, control, non-ASCII)")
    if b"%" in raw:
        if _BAD_ESCAPE.search(raw):
            raise BadPath("a '%' that does not start a two-digit hex escape")
        decoded = unquote_to_bytes(raw)
        if decoded.count(b"/") != raw.count(b"/") or decoded.translate(None, _DECODED_ALLOWED):
            raise BadPath("an encoded slash, backslash, '%', ';' or control character")
        try:
            path = decoded.decode("utf-8")
        except UnicodeDecodeError:
            raise BadPath("its escapes are not UTF-8") from None
    else:
        path = raw.decode("ascii")
    if "//" in path:
        raise BadPath("an empty segment ('//')")
    if "/." in path and any(segment in (".", "..") for segment in path.split("/")):
        raise BadPath("a '.' or '..' segment")
    return path


def raw_path_of(path: str) -> bytes:
    return quote(path, safe=_RAW_SAFE).encode("ascii")


def check_query(query: bytes) -> None:
    if query.translate(None, _QUERY_BYTES):
        raise BadRequest("the query string holds a character that must be percent-encoded")
    if b"%" in query and _ENCODED_CONTROL.search(query):
        raise BadRequest("the query string holds an encoded control character")
