"""The payments flows on fakes: SQLite (the schema from the real migrations, copied from one migrated
template per run), in-memory providers that record every call, the kit's dispatcher for events. No
PostgreSQL, no RabbitMQ, no HTTP."""

from __future__ import annotations

import itertools
import json
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, text

from contracts import EventData, OrderLine, OrderPlaced, new_envelope
from payments.app import MIGRATIONS
from payments.audit import ProviderLog
from payments.context import PaymentsContext
from payments.domain import money
from payments.handlers import build_handlers
from payments.models import Payment
from payments.providers.base import (
    Checkout,
    OpenedPayment,
    Outcome,
    ProviderRefused,
    ProviderUnavailable,
    ProviderVerdict,
    RefundCall,
    RefundResult,
)
from payments.providers.registry import ProviderRegistry
from payments.providers.stripe import StripeProvider
from payments.settings import PaymentsSettings
from payments.workers import drain_provider_calls
from shopkit.auth import Principal
from shopkit.consumer import EventDispatcher, EventHandlers
from shopkit.db import Database
from shopkit.migrate import upgrade
from shopkit.outbox import outbox


@dataclass
class Calls:
    """Every call a fake provider got, in order."""

    log: list[tuple[str, Any]] = field(default_factory=list)
    fail_next: list[Exception] = field(default_factory=list)

    def record(self, name: str, value: Any) -> None:
        self.log.append((name, value))
        if self.fail_next:
            raise self.fail_next.pop(0)

    def named(self, name: str) -> list[Any]:
        return [value for called, value in self.log if called == name]


class FakeStripe(StripeProvider):
    """Stripe's HTTP calls faked; verification and verdicts are the adapter's own."""

    def __init__(self, settings: PaymentsSettings, audit: ProviderLog) -> None:
        super().__init__(settings, audit)
        self.calls = Calls()
        self._ids = itertools.count(1)
        # What a lookup answers per session id (default: not paid yet), and Stripe's event list.
        self.sessions: dict[str, ProviderVerdict] = {}
        self.event_list: list[dict[str, Any]] = []

    def events_since(self, created_from: int, types: tuple[str, ...]) -> list[dict[str, Any]]:
        self.calls.record("events", created_from)
        return [e for e in self.event_list if e["created"] >= created_from and e["type"] in types]

    def open(self, checkout: Checkout) -> OpenedPayment:
        self.calls.record("open", checkout)
        n = next(self._ids)
        return OpenedPayment(f"cs_test_fake{n}", f"https://checkout.example/cs_test_fake{n}")

    def cancel(self, reference: str) -> None:
        self.calls.record("cancel", reference)

    def lookup(self, reference: str) -> ProviderVerdict:
        self.calls.record("lookup", reference)
        return self.sessions.get(reference) or ProviderVerdict(self.name, Outcome.PENDING, reference=reference)

    def refund(self, call: RefundCall) -> RefundResult:
        self.calls.record("refund", call)
        return RefundResult(f"re_fake{next(self._ids)}")


@dataclass
class BkashPayment:
    amount: Decimal
    status: str = "Initiated"
    authorised: bool = False
    trx_id: str | None = None


class FakeBkash:
    """bKash as its Execute/Query answer for each paymentID; the customer's steps are `authorise`."""

    name = "bkash"
    max_refunds: int | None = 10
    completes_on_its_own = False

    def __init__(self) -> None:
        self.calls = Calls()
        self.payments: dict[str, BkashPayment] = {}
        self._ids = itertools.count(1)
        self.execute_answer_lost = False

    def refuses_currency(self, currency: str) -> str | None:
        return None if currency == "BDT" else "bKash takes BDT only"

    def known_secrets(self) -> tuple[str, ...]:
        return ()

    def close(self) -> None:
        pass

    def open(self, checkout: Checkout) -> OpenedPayment:
        self.calls.record("open", checkout)
        reference = f"TR0011FAKE{next(self._ids)}"
        self.payments[reference] = BkashPayment(checkout.amount)
        return OpenedPayment(reference, f"https://bkash.example/{reference}")

    def cancel(self, reference: str) -> None:
        self.calls.record("cancel", reference)

    def authorise(self, reference: str) -> None:
        self.payments[reference].authorised = True

    def cancel_on_page(self, reference: str) -> None:
        self.payments[reference].status = "Cancelled"

    def complete(self, reference: str) -> ProviderVerdict:
        self.calls.record("execute", reference)
        payment = self.payments[reference]
        if payment.authorised and payment.status == "Initiated":
            payment.status, payment.trx_id = "Completed", f"TRX{next(self._ids)}"
        if self.execute_answer_lost:
            return ProviderVerdict(self.name, Outcome.UNKNOWN, reference=reference, detail="execute timed out")
        return self.lookup(reference)

    def lookup(self, reference: str) -> ProviderVerdict:
        self.calls.record("query", reference)
        payment = self.payments[reference]
        outcome = {"Completed": Outcome.PAID, "Cancelled": Outcome.CANCELLED, "Failed": Outcome.FAILED}.get(
            payment.status, Outcome.PENDING
        )
        return ProviderVerdict(
            self.name, outcome, reference, payment.trx_id, payment.amount, "BDT", detail=payment.status
        )

    def refund(self, call: RefundCall) -> RefundResult:
        self.calls.record("refund", call)
        return RefundResult(f"RF{next(self._ids)}")


@dataclass
class Payments:
    """The flows' context on fakes, and what a test needs to drive them."""

    context: PaymentsContext
    stripe: FakeStripe
    bkash: FakeBkash
    dispatcher: EventDispatcher

    @property
    def db(self) -> Database:
        return self.context.db

    def deliver(self, data: EventData, event_id: uuid.UUID | None = None) -> uuid.UUID:
        envelope = new_envelope(data, producer="orders", correlation_id=getattr(data, "order_id", None))
        if event_id is not None:
            envelope = envelope.model_copy(update={"id": event_id})
        self.dispatcher.handle(envelope)
        return envelope.id

    def place_order(self, user_id: uuid.UUID, total: str = "1250.00", currency: str = "BDT") -> uuid.UUID:
        order_id = uuid.uuid4()
        line = OrderLine(product_id=uuid.uuid4(), sku="SKU-1", name="Thing", unit_price=Decimal(total), quantity=1)
        self.deliver(
            OrderPlaced(order_id=order_id, user_id=user_id, currency=currency, total_amount=money(total), items=[line])
        )
        return order_id

    def payment(self, payment_id: uuid.UUID) -> Payment:
        with self.context.uow() as uow:
            payment = uow.session.get(Payment, payment_id)
            assert payment is not None
            return payment

    def events(self, event_type: str) -> list[dict[str, Any]]:
        with self.db.engine.connect() as connection:
            rows = connection.execute(select(outbox.c.envelope).where(outbox.c.event_type == event_type))
            return [row.envelope if isinstance(row.envelope, dict) else json.loads(row.envelope) for row in rows]

    def rows(self, sql: str, **params: Any) -> list[Any]:
        with self.db.engine.connect() as connection:
            return list(connection.execute(text(sql), params))

    def drain(self) -> int:
        """What the provider-calls worker does when woken."""
        return drain_provider_calls(self.context)


def customer(user_id: uuid.UUID) -> Principal:
    return Principal(user_id=user_id, role="customer", token_id="t")


def admin() -> Principal:
    return Principal(user_id=uuid.uuid4(), role="admin", token_id="a")


@pytest.fixture(scope="session")
def migrated_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("payments-schema") / "payments.db"
    db = Database(f"sqlite:///{path}", service="payments")
    try:
        upgrade(db, MIGRATIONS)
    finally:
        db.dispose()
    return path


@pytest.fixture
def svc(tmp_path: Path, migrated_template: Path) -> Iterator[Payments]:
    path = tmp_path / "payments.db"
    shutil.copy(migrated_template, path)
    settings = PaymentsSettings(var_dir=tmp_path, log_json=False, sandbox_stripe_url="http://127.0.0.1:9")
    db = Database(f"sqlite:///{path}", service="payments")
    audit = ProviderLog(db, lambda: tuple(settings.provider_secrets().values()))
    stripe, bkash = FakeStripe(settings, audit), FakeBkash()
    context = PaymentsContext(db, settings, ProviderRegistry(stripe=stripe, bkash=bkash), audit)
    context.arrivals.listen(db.sessions)
    handlers = build_handlers(EventHandlers(), context.providers, context.arrivals)
    try:
        yield Payments(context, stripe, bkash, EventDispatcher(db, handlers))
    finally:
        stripe.close()
        db.dispose()


__all__ = ["Payments", "ProviderRefused", "ProviderUnavailable", "admin", "customer"]
