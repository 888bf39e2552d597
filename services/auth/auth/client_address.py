"""Which client a login comes from: the address failed logins are counted under."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

# Longer than any spelling of an IP address; anything longer is not one and is cut to fit the column.
MAX_ADDRESS_LENGTH = 64
# One IPv6 subscriber routinely holds a whole /64: counted per address, it would have 2**64 fresh ones.
IPV6_SUBSCRIBER_PREFIX = 64


def client_address(forwarded_for: Sequence[str], peer: str | None) -> str:
    """The address a request comes from: the rightmost `X-Forwarded-For` entry, else the TCP peer.

    Why the rightmost entry can be trusted: the gateway is the only public door, and the auth service is
    not reachable from outside. The gateway drops every `X-Forwarded-*` header a client sends, unless an
    operator declared trusted proxies in front of it, and then *appends* the address it decided the
    client has (its TCP peer, or the entry its trusted proxies vouch for). Whatever a client writes into
    the header therefore stands to the left of that last entry, never in its place, and leftmost
    entries are never read here. `forwarded_for` is every `X-Forwarded-For` header line in order
    (several lines are one comma-separated list, RFC 9110 5.3).

    Without the header (a caller inside the deployment, the tests) the TCP peer is the client."""
    entries = [entry.strip() for line in forwarded_for for entry in line.split(",")]
    if entries and entries[-1]:
        return _throttle_key(entries[-1])
    return _throttle_key(peer or "unknown")


def _throttle_key(address: str) -> str:
    """One spelling per client: IPv6 per /64 (`2001:db8:1:2::/64`), IPv4-mapped IPv6 as IPv4, other
    spellings canonical; what is not an address (a test client's name) is kept as it is."""
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return address[:MAX_ADDRESS_LENGTH]
    if isinstance(parsed, ipaddress.IPv6Address):
        if parsed.ipv4_mapped is not None:
            return str(parsed.ipv4_mapped)
        return str(ipaddress.IPv6Network((parsed, IPV6_SUBSCRIBER_PREFIX), strict=False))
    return str(parsed)
