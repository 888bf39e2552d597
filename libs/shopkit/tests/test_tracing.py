"""One trace across requests, the outbox and the bus: a request's traceparent reaches the events it
emits and the spans of their consumers (per-event and batch handlers alike), and every JSON log line
written meanwhile names the trace."""

from __future__ import annotations

import io
import json
import logging
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path

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
