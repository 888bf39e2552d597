"""W3C trace context (`traceparent`) carried through requests, the outbox and the bus, so one checkout
is one trace across every service. This module keeps the current context in a context variable at
almost no cost; when OpenTelemetry export is configured, spans are recorded as well."""

from __future__ import annotations

import contextvars
import re
import secrets
from collections.abc import Iterator
from contextlib import contextmanager

_TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")
_current: contextvars.ContextVar[str | None] = contextvars.ContextVar("traceparent", default=None)


def parse(traceparent: str | None) -> tuple[str, str, str] | None:
    """(trace id, parent span id, flags) of a valid traceparent, else None."""
    if not traceparent:
        return None
    match = _TRACEPARENT.match(traceparent.strip())
    if match is None or match.group(1) == "0" * 32 or match.group(2) == "0" * 16:
        return None
    return match.group(1), match.group(2), match.group(3)


def child_of(traceparent: str | None) -> str:
    """A traceparent for new work: the same trace as `traceparent` when it is valid, else a new trace."""
    parsed = parse(traceparent)
    trace_id, flags = (parsed[0], parsed[2]) if parsed else (secrets.token_hex(16), "01")
    return f"00-{trace_id}-{secrets.token_hex(8)}-{flags}"


def current_traceparent(default: str | None = None) -> str | None:
    return _current.get() or default


def current_trace_id() -> str | None:
    parsed = parse(_current.get())
    return parsed[0] if parsed else None


@contextmanager
def continue_trace(traceparent: str | None) -> Iterator[str]:
    """Run the block as a child of `traceparent` (or as a new trace)."""
    context = child_of(traceparent)
    token = _current.set(context)
    try:
        yield context
    finally:
        _current.reset(token)
