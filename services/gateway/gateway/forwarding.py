"""What the gateway reads from a request's headers, and what it forwards of them, in one pass."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from shopkit.auth import SERVICE_TOKEN_HEADER

# Hop-by-hop headers (RFC 9110 7.6.1) belong to one connection and are never forwarded.
HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"host",
        b"content-length",
    }
)
# Never passed on from outside: the services' own credential, and every claim about the client's
# address or scheme (the gateway states those itself, from what it decided).
_NOT_FORWARDED = HOP_BY_HOP | {
    SERVICE_TOKEN_HEADER.encode(),
    b"forwarded",
    b"x-real-ip",
    # Replaced by the gateway's own span, so the services' spans are children of it (same trace).
    b"traceparent",
    # The gateway has read the whole body before it forwards: a service must not answer 100 Continue.
    b"expect",
}


class Incoming:
    """A request's headers, read once: those the gateway decides on, and those it passes on."""

    __slots__ = ("authorization", "forwarded_for", "host", "passed_on", "prefer")

    def __init__(self, headers: Iterable[tuple[bytes, bytes]]) -> None:
        self.authorization: bytes | None = None
        self.prefer: bytes | None = None  # passed on too; its `wait` lengthens the upstream timeout
        self.forwarded_for: list[bytes] = []
        self.host: bytes | None = None
        passed_on: list[tuple[bytes, bytes]] = []
        connection: bytes | None = None
        for name, value in headers:
            if name not in _NOT_FORWARDED and not name.startswith(b"x-forwarded-"):
                passed_on.append((name, value))
                if name == b"authorization":
                    self.authorization = value
                elif name == b"prefer":
                    self.prefer = value
            elif name == b"x-forwarded-for":
                self.forwarded_for.append(value)
            elif name == b"host":
                self.host = value
            elif name == b"connection":
                connection = value
        if connection is not None:
            passed_on = _without_connection_options(passed_on, connection)
        self.passed_on = passed_on


def _without_connection_options(headers: list[tuple[bytes, bytes]], connection: bytes) -> list[tuple[bytes, bytes]]:
    # Headers named in Connection are hop-by-hop for this connection only (RFC 9110 7.6.1).
    named = {token.strip().lower() for token in connection.split(b",")} - HOP_BY_HOP
    if not named:  # the usual "keep-alive" or "close"
        return headers
    return [(name, value) for name, value in headers if name not in named]


def client_address(peer: tuple[str, int] | None, forwarded_for: list[bytes], trusted_proxies: int) -> str:
    """The TCP peer, or with N trusted proxies in front, the N-th address from the right of
    X-Forwarded-For (the one the outermost trusted proxy saw; what lies left of it anyone can write)."""
    if trusted_proxies and forwarded_for:
        hops = b",".join(forwarded_for).split(b",")
        chosen = hops[-trusted_proxies] if len(hops) >= trusted_proxies else hops[0]
        address = _ip_address(chosen.strip())
        if address is not None:
            return address
    return peer[0] if peer else "unknown"


def _ip_address(text: bytes) -> str | None:
    """An address in canonical form (one spelling, one bucket), its port dropped; None if not one."""
    raw = text.decode("latin-1")
    if raw.startswith("["):
        raw = raw[1:].partition("]")[0]
    elif raw.count(":") == 1:
        raw = raw.partition(":")[0]
    try:
        return str(ipaddress.ip_address(raw))
    except ValueError:
        return None
