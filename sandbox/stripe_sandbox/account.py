"""The fake Stripe account: every object it holds, the lock around them, events, and their storage.

Request handlers, the hosted pages and the webhook thread all change the account inside
`changing()`: validate, change, emit, as one step under one lock, so no request sees a half-made
object. A change notes what it touched; with a journal (a state directory) those objects are written
in one transaction before the lock is released, and only then are the events it emitted handed to
`publish` (the webhook dispatcher). Changes nest: an inner one joins the outer, so an idempotent
request's objects and its saved answer are stored together.
"""

from __future__ import annotations

import heapq
import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

from sandbox.persistence import Journal, Row
from sandbox.stripe_sandbox.errors import resource_missing
from sandbox.stripe_sandbox.events import PENDING, Delivery, EventRecord
from sandbox.stripe_sandbox.objects import Charge, CheckoutSession, PaymentIntent, Refund, new_id


class Stored(Protocol):
    id: str

    def to_state(self) -> dict[str, Any]: ...


class DeliveryPolicy(Protocol):
    """Decides, when an event is made, whether and how the webhook endpoint gets it."""

    def initial_delivery(self, event_type: str) -> Delivery | None: ...


class DeliverNothing:
    def initial_delivery(self, event_type: str) -> Delivery | None:
        return None


@dataclass
class Change:
    emitted: list[EventRecord] = field(default_factory=list)
    rows: dict[tuple[str, str], Callable[[], dict[str, Any]]] = field(default_factory=dict)

    def touch(self, kind: str, obj: Stored) -> None:
        # The state is taken when the change commits, so touching early and changing later is fine.
        self.rows[(kind, obj.id)] = obj.to_state

    def touch_row(self, kind: str, key: str, state: dict[str, Any]) -> None:
        self.rows[(kind, key)] = lambda: state


class StripeAccount:
    def __init__(self, api_version: str, journal: Journal | None = None) -> None:
        self.api_version = api_version
        self.journal = journal
        self.publish: Callable[[EventRecord], None] = lambda record: None
        self.deliveries: DeliveryPolicy = DeliverNothing()
        self.lock = threading.RLock()
        self.sessions: dict[str, CheckoutSession] = {}
        self.payment_intents: dict[str, PaymentIntent] = {}
        self.charges: dict[str, Charge] = {}
        self.refunds: dict[str, Refund] = {}
        # In the order they were made; GET /v1/events lists them newest first.
        self.events: dict[str, EventRecord] = {}
        # (expires_at, session id) of sessions that were open when pushed: the sweeper's queue.
        self.open_by_expiry: list[tuple[int, str]] = []
        self._change: Change | None = None

    @contextmanager
    def changing(self) -> Iterator[Change]:
        with self.lock:
            outer = self._change is None
            if outer:
                self._change = Change()
            change = self._change
            assert change is not None
            try:
                yield change
            finally:
                # What was changed before an error is changed all the same (a session expired on
                # the way to a refused request stays expired), so it is stored and published too.
                if outer:
                    self._change = None
                    self._commit(change)
        if outer:
            for record in change.emitted:
                self.publish(record)

    def _commit(self, change: Change) -> None:
        if self.journal is not None and change.rows:
            rows: list[Row] = [(kind, key, state()) for (kind, key), state in change.rows.items()]
            self.journal.write(rows)

    def emit(
        self,
        change: Change,
        event_type: str,
        data_object: dict[str, Any],
        *,
        previous_attributes: dict[str, Any] | None = None,
    ) -> EventRecord:
        data: dict[str, Any] = {"object": data_object}
        if previous_attributes is not None:
            data["previous_attributes"] = previous_attributes
        created = int(time.time())
        delivery = self.deliveries.initial_delivery(event_type)
        payload: dict[str, Any] = {
            "id": new_id("evt_"),
            "object": "event",
            "api_version": self.api_version,
            "created": created,
            "data": data,
            "livemode": False,
            "pending_webhooks": 1 if delivery is not None and delivery.status == PENDING else 0,
            "request": {"id": None, "idempotency_key": None},
            "type": event_type,
        }
        body = json.dumps(payload, separators=(",", ":"))
        record = EventRecord(payload["id"], event_type, created, payload, body, delivery)
        self.events[record.id] = record
        change.touch("event", record)
        if delivery is not None:
            change.rows[("delivery", record.id)] = delivery.to_state
        change.emitted.append(record)
        return record

    def save_delivery(self, record: EventRecord) -> None:
        """Store a delivery's progress (the webhook thread calls this after each attempt)."""
        if self.journal is not None and record.delivery is not None:
            with self.lock:
                self.journal.write([("delivery", record.id, record.delivery.to_state())])

    def event(self, event_id: str) -> EventRecord:
        record = self.events.get(event_id)
        if record is None:
            raise resource_missing("event", event_id)
        return record

    def reset(self) -> None:
        with self.lock:
            # Deliveries waiting for a retry hold their record: mark them so the dispatcher drops them.
            for record in self.events.values():
                if record.delivery is not None:
                    record.delivery.status = "cancelled"
            for store in (self.sessions, self.payment_intents, self.charges, self.refunds, self.events):
                store.clear()  # type: ignore[attr-defined]
            self.open_by_expiry.clear()
            if self.journal is not None:
                self.journal.clear()

    def load(self) -> None:
        """Read back what the journal holds (at start-up, before serving)."""
        if self.journal is None:
            return
        journal = self.journal
        with self.lock:
            self.sessions = {k: CheckoutSession.from_state(s) for k, s in journal.load("session")}
            self.payment_intents = {k: PaymentIntent.from_state(s) for k, s in journal.load("payment_intent")}
            self.charges = {k: Charge.from_state(s) for k, s in journal.load("charge")}
            self.refunds = {k: Refund.from_state(s) for k, s in journal.load("refund")}
            deliveries = {k: Delivery.from_state(s) for k, s in journal.load("delivery")}
            self.events = {k: EventRecord.from_state(s, deliveries.get(k)) for k, s in journal.load("event")}
            self.open_by_expiry = [(s.expires_at, s.id) for s in self.sessions.values() if s.status == "open"]
            heapq.heapify(self.open_by_expiry)

    def pending_deliveries(self) -> list[EventRecord]:
        with self.lock:
            return [r for r in self.events.values() if r.delivery is not None and r.delivery.status == PENDING]
