"""One trace across requests, the outbox and the bus: a request's traceparent reaches the events it
emits and the spans of their consumers (per-event and batch handlers alike), and every JSON log line
written meanwhile names the trace."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest
from fastapi import Depends
from fastapi.testclient import TestClient
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from sqlalchemy import select

from contracts import Envelope, OrderCancelled, OrderConfirmed
from shopkit import tracing
from shopkit.bus.inprocess import InProcessTransport
from shopkit.consumer import EventDispatcher, EventHandlers
from shopkit.db import Database
from shopkit.lifecycle import ServiceRuntime
from shopkit.observability import JsonFormatter
from shopkit.outbox import outbox
from shopkit.settings import KitSettings
from shopkit.uow import UnitOfWork
from shopkit.webapp import create_service_app, get_uow

from .conftest import KIT_MIGRATIONS, cancelled, make_kit_database

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = f"00-{TRACE}-00f067aa0ba902b7-01"


def trace_of(traceparent: str | None) -> str | None:
    parsed = tracing.parse(traceparent)
    return parsed[0] if parsed else None


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    tracing.record_spans(exporter)
    yield exporter
    tracing.stop_recording()


@pytest.mark.unit
def test_without_export_the_context_still_travels_and_costs_no_sdk() -> None:
    assert not tracing.enabled()
    with tracing.span("outer", service="orders", parent=PARENT) as outer:
        assert trace_of(outer) == TRACE and outer != PARENT
        assert tracing.current_trace_id() == TRACE
        with tracing.span("inner", service="orders") as inner:
            assert trace_of(inner) == TRACE and inner != outer
    assert tracing.current_traceparent() is None
    for broken in ("garbage", f"00-{'0' * 32}-00f067aa0ba902b7-01", "01-x-y-z", ""):
        with tracing.span("fresh", service="orders", parent=broken) as fresh:
            assert trace_of(fresh) not in (None, TRACE, "0" * 32)


def emitted(db: Database) -> list[Envelope]:
    with db.engine.connect() as connection:
        return [Envelope.model_validate(row) for row in connection.execute(select(outbox.c.envelope)).scalars()]


@pytest.mark.integration
def test_a_requests_trace_reaches_its_events_and_their_consumers(tmp_path: Path, spans: InMemorySpanExporter) -> None:
    settings = KitSettings(var_dir=tmp_path, database_url=None, amqp_url=None)
    runtime = ServiceRuntime("orders", settings, migrations=KIT_MIGRATIONS, transport=InProcessTransport())
    app = create_service_app(runtime, title="traced")

    @app.post("/cancel", status_code=201)
    def cancel(uow: UnitOfWork = Depends(get_uow)) -> dict[str, str]:
        uow.emit(cancelled())
        uow.commit()
        return {"ok": "yes"}

    with TestClient(app) as client:
        assert client.post("/cancel", headers={"traceparent": PARENT}).status_code == 201
        [envelope] = emitted(runtime.db)
    assert trace_of(envelope.traceparent) == TRACE
    server = [s for s in spans.get_finished_spans() if s.kind == tracing.SERVER]
    assert [format(s.context.trace_id, "032x") for s in server] == [TRACE]
    assert server[0].attributes["shop.service"] == "orders"
    # The event was emitted inside the request's span: the span is its parent.
    assert tracing.parse(envelope.traceparent)[1] == format(server[0].context.span_id, "016x")  # type: ignore[index]

    # Consumed elsewhere, by a per-event and by a batch handler: both join the trace, and the batch
    # handler's answer is a child of its consume span.
    consumer = make_kit_database(f"sqlite:///{tmp_path / 'payments.db'}", service="payments")

    def per_event(event: OrderCancelled, uow: UnitOfWork) -> None:
        uow.emit(OrderConfirmed(order_id=event.order_id, user_id=event.user_id, total_amount="1.00", currency="BDT"))

    def batch(events: Sequence[OrderCancelled], uow: UnitOfWork) -> None:
        for event in events:
            uow.emit(
                OrderConfirmed(order_id=event.order_id, user_id=event.user_id, total_amount="2.00", currency="BDT"),
                caused_by=event,
            )

    handlers = EventHandlers()
    handlers.add(OrderCancelled, per_event, name="per-event")
    handlers.add_batch(OrderCancelled, batch, name="batch")
    assert EventDispatcher(consumer, handlers).handle_batch([envelope]) == [None]
    answers = emitted(consumer)
    assert len(answers) == 2 and {trace_of(a.traceparent) for a in answers} == {TRACE}
    consumed = [s for s in spans.get_finished_spans() if s.kind == tracing.CONSUMER]
    assert {s.attributes["shop.handler"] for s in consumed} == {"per-event", "batch"}
    assert {format(s.context.trace_id, "032x") for s in consumed} == {TRACE}
    consume_ids = {format(s.context.span_id, "016x") for s in consumed}
    assert {tracing.parse(a.traceparent)[1] for a in answers} == consume_ids  # type: ignore[index]
    consumer.dispose()


@pytest.mark.unit
def test_every_json_log_line_in_a_trace_names_it() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger(f"test-{uuid.uuid4().hex}")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    with tracing.span("work", service="catalog", parent=PARENT):
        logger.info("stock committed")
    logger.info("outside any trace")
    inside, outside = (json.loads(line) for line in stream.getvalue().splitlines())
    assert inside["trace_id"] == TRACE
    assert "trace_id" not in outside


# A service with tracing off, in a process of its own: a traced request emits a traced event, and
# OpenTelemetry's SDK is never even imported.
_UNTRACED_SERVICE = """
import sys
from fastapi import Depends
from fastapi.testclient import TestClient
from shopkit import tracing
from shopkit.bus.inprocess import InProcessTransport
from shopkit.lifecycle import ServiceRuntime
from shopkit.outbox import outbox
from shopkit.settings import KitSettings
from sqlalchemy import select
from shopkit.tests.conftest import KIT_MIGRATIONS, cancelled
from shopkit.uow import UnitOfWork
from shopkit.webapp import create_service_app, get_uow

settings = KitSettings(var_dir=sys.argv[1], database_url=None, amqp_url=None)
runtime = ServiceRuntime("orders", settings, migrations=KIT_MIGRATIONS, transport=InProcessTransport())
app = create_service_app(runtime, title="untraced")

@app.post("/cancel", status_code=201)
def cancel(uow: UnitOfWork = Depends(get_uow)) -> None:
    uow.emit(cancelled())
    uow.commit()

with TestClient(app) as client:
    assert client.post("/cancel", headers={"traceparent": sys.argv[2]}).status_code == 201
    with runtime.db.engine.connect() as connection:
        [envelope] = connection.execute(select(outbox.c.envelope)).scalars()
assert tracing.parse(envelope["traceparent"])[0] == tracing.parse(sys.argv[2])[0]
assert not tracing.enabled()
print(sorted(m for m in sys.modules if m.startswith("opentelemetry.sdk")))
"""


@pytest.mark.integration
def test_with_tracing_off_no_span_is_made_and_the_sdk_is_not_loaded(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "SHOP_"))}
    done = subprocess.run(
        [sys.executable, "-c", _UNTRACED_SERVICE, str(tmp_path), PARENT],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).parents[3],
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == "[]"


class _Collector(BaseHTTPRequestHandler):
    received: ClassVar[list[tuple[str, bytes]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.received.append((self.path, body))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.mark.integration
def test_with_an_otlp_endpoint_spans_are_exported_over_otlp(monkeypatch: pytest.MonkeyPatch) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Collector)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _Collector.received.clear()
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{server.server_port}")
    monkeypatch.delenv("OTEL_SERVICE_NAME", raising=False)
    try:
        tracing.configure("catalog")
        assert tracing.enabled()
        with tracing.span("commit stock", service="catalog", parent=PARENT):
            pass
    finally:
        tracing.stop_recording()  # flushes what the batch processor still holds
        server.shutdown()
        thread.join(5)
    [(path, body)] = _Collector.received
    assert path == "/v1/traces"
    # OTLP's protobuf carries the trace id as 16 raw bytes, the names as UTF-8.
    assert bytes.fromhex(TRACE) in body and b"commit stock" in body and b"shop-catalog" in body
