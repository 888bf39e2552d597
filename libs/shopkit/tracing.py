"""One trace per checkout across every service: the W3C trace context (`traceparent`) travels in HTTP
headers between processes and in the event envelope through the outbox and the bus.

Off by default, and then nearly free: the current context is a string in a context variable (so JSON
logs still carry `trace_id` and envelopes still carry `traceparent`). When `OTEL_EXPORTER_OTLP_ENDPOINT`
is set (or a test calls `record_spans`), OpenTelemetry's SDK records a span for every request,
consumed event and published event, and exports them over OTLP."""

from __future__ import annotations

import contextvars
import os
import re
import secrets
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import SpanKind
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

_TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")
_current: contextvars.ContextVar[str | None] = contextvars.ContextVar("traceparent", default=None)
_propagator = TraceContextTextMapPropagator()
_tracer: trace.Tracer | None = None
_provider: Any = None  # the SDK's TracerProvider while spans are recorded

SERVER, CONSUMER, PRODUCER, CLIENT, INTERNAL = (
    SpanKind.SERVER,
    SpanKind.CONSUMER,
    SpanKind.PRODUCER,
    SpanKind.CLIENT,
    SpanKind.INTERNAL,
)


def configure(service: str) -> None:
    """At process start: export spans over OTLP when an endpoint is configured, else stay off."""
    if _tracer is not None or not os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        return
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    _install(os.environ.get("OTEL_SERVICE_NAME", f"shop-{service}"), BatchSpanProcessor(OTLPSpanExporter()))


def record_spans(exporter: Any, *, service_name: str = "shop") -> None:
    """Record every span synchronously into `exporter` (tests: an InMemorySpanExporter)."""
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    _install(service_name, SimpleSpanProcessor(exporter))


def _install(service_name: str, processor: Any) -> None:
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider

    global _tracer, _provider
    stop_recording()
    # Not registered as OpenTelemetry's global provider: only the kit's spans are recorded, and a
    # process with tracing off never imports the SDK.
    _provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
    _provider.add_span_processor(processor)
    _tracer = _provider.get_tracer("shopkit")


def stop_recording() -> None:
    """Export what is still buffered and record no more spans."""
    global _tracer, _provider
    provider, _tracer, _provider = _provider, None, None
    if provider is not None:
        provider.shutdown()


def enabled() -> bool:
    return _tracer is not None


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
def joined(traceparent: str | None) -> Iterator[None]:
    """Run the block in the trace of `traceparent` (when valid) without a span of its own: what a batch
    handler logs about one event of its batch names that event's trace. Free whether tracing is on or off."""
    if not parse(traceparent):
        yield
        return
    token = _current.set(traceparent)
    try:
        yield
    finally:
        _current.reset(token)


@contextmanager
def span(
    name: str,
    *,
    service: str,
    parent: str | None = None,
    kind: SpanKind = INTERNAL,
    attributes: Mapping[str, str] | None = None,
) -> Iterator[str]:
    """Run the block as a child of `parent` (a traceparent; None: of the current context, or a new
    trace). Yields the block's own traceparent."""
    parent = parent if parse(parent) else _current.get()
    if _tracer is None:
        token = _current.set(child_of(parent))
        try:
            yield _current.get() or ""
        finally:
            _current.reset(token)
        return
    context = _propagator.extract({"traceparent": parent}) if parent else None
    with _tracer.start_as_current_span(
        name, context=context, kind=kind, attributes={"shop.service": service, **(attributes or {})}
    ) as current:
        carrier: dict[str, str] = {}
        _propagator.inject(carrier, context=trace.set_span_in_context(current))
        token = _current.set(carrier.get("traceparent") or child_of(parent))
        try:
            yield _current.get() or ""
        finally:
            _current.reset(token)
