"""The Prefer request header (RFC 7240), of which the shop honours one preference: `wait=N`, the
seconds a client is willing to wait for an answer that changes (orders' long poll). The gateway gives
such a request that much more time; the service decides how long it really waits."""

from __future__ import annotations

# Seconds beyond which no wait is granted, whatever a request asks for.
MOST = 30.0


def preferred_wait(prefer: str | bytes | None, *, most: float = MOST) -> float:
    """The `wait` a Prefer header asks for, capped at `most`; 0 when it asks for none. Preferences the
    shop does not know, and a `wait` that is not a non-negative number of seconds, are ignored (RFC
    7240: a server ignores a preference it does not understand)."""
    if not prefer:
        return 0.0
    text = prefer.decode("latin-1") if isinstance(prefer, bytes) else prefer
    for preference in text.split(","):
        name, _, value = preference.split(";", 1)[0].partition("=")
        if name.strip().lower() != "wait":
            continue
        value = value.strip().strip('"')
        if value.isdigit():
            return min(float(value), most)
    return 0.0
