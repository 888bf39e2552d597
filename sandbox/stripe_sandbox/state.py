"""The fake Stripe account: Checkout Sessions, payment intents, charges, refunds and events.

Everything lives in memory behind one lock. Request handlers, the hosted pages and the webhook
thread all go through `StripeAccount`, whose methods validate, change state and emit events as
one step, so concurrent requests never see half-made objects. Events are handed to `publish`
(the webhook dispatcher) only after the lock is released.
"""

from __future__ import annotations

import copy
import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from sandbox.stripe_sandbox import params as p
from sandbox.stripe_sandbox.errors import StripeError, parameter_invalid, parameter_missing, resource_missing
from sandbox.stripe_sandbox.objects import (
    Charge,
    CheckoutSession,
    DeliveryAttempt,
    EventRecord,
    LineItem,
    PaymentIntent,
    Refund,
    new_id,
)

SESSION_PARAMS = frozenset(
    {
        "after_expiration", "allow_promotion_codes", "automatic_tax", "billing_address_collection",
        "cancel_url", "client_reference_id", "consent_collection", "currency", "custom_fields",
        "custom_text", "customer", "customer_creation", "customer_email", "customer_update",
        "discounts", "expand", "expires_at", "invoice_creation", "line_items", "locale", "metadata",
        "mode", "payment_intent_data", "payment_method_configuration", "payment_method_options",
        "payment_method_types", "phone_number_collection", "redirect_on_completion", "return_url",
        "saved_payment_method_options", "shipping_address_collection", "shipping_options",
        "submit_type", "success_url", "tax_id_collection", "ui_mode",
    }
)  # fmt: skip
LINE_ITEM_PARAMS = frozenset(
    {"price", "price_data", "quantity", "adjustable_quantity", "dynamic_tax_rates", "tax_rates"}
)
PRICE_DATA_PARAMS = frozenset(
    {"currency", "product", "product_data", "unit_amount", "unit_amount_decimal", "tax_behavior", "recurring"}
)
REFUND_PARAMS = frozenset(
    {"payment_intent", "charge", "amount", "reason", "metadata", "expand", "instructions_email", "origin"}
)
REFUND_REASONS = frozenset({"duplicate", "fraudulent", "requested_by_customer"})
# Stripe's bounds for `expires_at`, measured from creation. The lower bound allows a minute of
# slack: a client computes `now + 30 min` a moment before the request arrives.
EXPIRES_MIN_SECONDS = 30 * 60
EXPIRES_MAX_SECONDS = 24 * 60 * 60
EXPIRES_SLACK_SECONDS = 60


class StripeAccount:
    def __init__(self, api_version: str) -> None:
        self.api_version = api_version
        self.publish: Callable[[EventRecord], None] = lambda record: None
        self._lock = threading.RLock()
        self._sessions: dict[str, CheckoutSession] = {}
        self._payment_intents: dict[str, PaymentIntent] = {}
        self._charges: dict[str, Charge] = {}
        self._refunds: dict[str, Refund] = {}
        self._events: dict[str, EventRecord] = {}

    @contextmanager
    def _changing(self) -> Iterator[list[EventRecord]]:
        """Hold the lock for one operation; publish what it emitted once the lock is released."""
        emitted: list[EventRecord] = []
        with self._lock:
            yield emitted
        for record in emitted:
            self.publish(record)

    def reset(self) -> None:
        with self._lock:
            # Pending retries hold their record: mark it so the dispatcher drops them.
            for record in self._events.values():
                record.delivery_status = "cancelled"
            for store in (self._sessions, self._payment_intents, self._charges, self._refunds, self._events):
                store.clear()

    # Checkout Sessions

    def create_session(self, params: dict[str, Any], hosted_base: str) -> dict[str, Any]:
        p.reject_unknown(params, SESSION_PARAMS)
        mode = p.req_str(params, "mode")
        if mode != "payment":
            raise parameter_invalid("mode", f"The sandbox supports only mode=payment, not {mode!r}.")
        # Optional, as in Stripe: without it the hosted page keeps the customer after payment.
        success_url = p.opt_url(params, "success_url")
        cancel_url = p.opt_url(params, "cancel_url")
        line_items = self._line_items(params)
        currency = line_items[0].currency
        if "currency" in params and p.currency(params["currency"], "currency") != currency:
            raise parameter_invalid("currency", "The currency must match the currency of the line items.")
        if any(item.currency != currency for item in line_items):
            raise parameter_invalid("line_items", "All line items must use the same currency.")
        amount_total = sum(item.amount_total for item in line_items)
        if amount_total <= 0:
            raise StripeError(
                400,
                "The Checkout Session's total amount due must be greater than zero.",
                code="amount_too_small",
                param="line_items",
            )
        now = int(time.time())
        expires_at = p.opt_int(params, "expires_at")
        if expires_at is None:
            expires_at = now + EXPIRES_MAX_SECONDS
        elif not (
            now + EXPIRES_MIN_SECONDS - EXPIRES_SLACK_SECONDS
            <= expires_at
            <= now + EXPIRES_MAX_SECONDS + EXPIRES_SLACK_SECONDS
        ):
            raise parameter_invalid(
                "expires_at",
                "The `expires_at` timestamp must be between 30 minutes and 24 hours from Checkout Session creation.",
                code="parameter_invalid_integer",
            )
        payment_intent_data = p.opt_dict(params, "payment_intent_data") or {}
        session_id = new_id("cs_test_", 58)
        session = CheckoutSession(
            id=session_id,
            created=now,
            expires_at=expires_at,
            url=f"{hosted_base}/checkout/{session_id}",
            currency=currency,
            line_items=line_items,
            success_url=success_url,
            cancel_url=cancel_url,
            metadata=p.metadata(params),
            client_reference_id=p.opt_str(params, "client_reference_id", max_length=200),
            customer_email=p.opt_str(params, "customer_email", max_length=800),
            locale=p.opt_str(params, "locale"),
            payment_intent_metadata=p.metadata(payment_intent_data, "metadata"),
        )
        with self._changing():
            self._sessions[session.id] = session
            return self._session_json(session, p.expand(params))

    @staticmethod
    def _line_items(params: dict[str, Any]) -> list[LineItem]:
        raw = params.get("line_items")
        if raw is None or raw == "":
            raise parameter_missing("line_items")
        if not isinstance(raw, list) or not raw:
            raise parameter_invalid("line_items", "Invalid array: line_items must be a list.")
        items: list[LineItem] = []
        for index, entry in enumerate(raw):
            where = f"line_items[{index}]"
            if not isinstance(entry, dict):
                raise parameter_invalid(where, f"Invalid object: {where} must be a hash.")
            p.reject_unknown(entry, LINE_ITEM_PARAMS, where)
            if "price" in entry:
                # The shop sends ad-hoc prices; a Price object id would need a catalogue we do not keep.
                raise resource_missing("price", str(entry["price"]), param=f"{where}[price]")
            price_data = p.opt_dict(entry, "price_data")
            if price_data is None:
                raise parameter_missing(f"{where}[price_data]")
            p.reject_unknown(price_data, PRICE_DATA_PARAMS, f"{where}[price_data]")
            product_data = p.opt_dict(price_data, "product_data")
            if product_data is None:
                raise parameter_missing(f"{where}[price_data][product_data]")
            name = product_data.get("name")
            if not isinstance(name, str) or not name:
                raise parameter_missing(f"{where}[price_data][product_data][name]")
            unit_amount = p.opt_int(price_data, "unit_amount")
            if unit_amount is None:
                raise parameter_missing(f"{where}[price_data][unit_amount]")
            if unit_amount < 0:
                raise parameter_invalid(
                    f"{where}[price_data][unit_amount]",
                    "Invalid non-negative integer",
                    code="parameter_invalid_integer",
                )
            quantity = p.opt_int(entry, "quantity")
            if quantity is None:
                raise parameter_missing(f"{where}[quantity]")
            if quantity < 1:
                raise parameter_invalid(
                    f"{where}[quantity]", "Quantity must be at least 1.", code="parameter_invalid_integer"
                )
            items.append(
                LineItem(
                    id=new_id("li_"),
                    name=name,
                    currency=p.currency(price_data.get("currency"), f"{where}[price_data][currency]"),
                    unit_amount=unit_amount,
                    quantity=quantity,
                    price_id=new_id("price_"),
                    product_id=new_id("prod_", 14),
                )
            )
        return items

    def get_session(self, session_id: str, expand: list[str] | None = None) -> dict[str, Any]:
        with self._changing() as emitted:
            session = self._session(session_id, emitted)
            return self._session_json(session, expand or [])

    def session_line_items(self, session_id: str) -> dict[str, Any]:
        with self._changing() as emitted:
            session = self._session(session_id, emitted)
            return {
                "object": "list",
                "data": [item.to_json() for item in session.line_items],
                "has_more": False,
                "url": f"/v1/checkout/sessions/{session.id}/line_items",
            }

    def expire_session(self, session_id: str) -> dict[str, Any]:
        with self._changing() as emitted:
            session = self._session(session_id, emitted)
            if session.status != "open":
                raise StripeError(
                    400,
                    f'Only Checkout Sessions with a status in ["open"] can be expired. This session has '
                    f'a status of "{session.status}".',
                    saved=True,
                )
            self._expire(session, emitted)
            return session.to_json()

    def pay_session(self, session_id: str, email: str | None) -> CheckoutSession:
        """What the hosted page's successful card payment does: money taken, session complete."""
        with self._changing() as emitted:
            session = self._open_session(session_id, emitted)
            now = int(time.time())
            payment_method = new_id("pm_")
            charge = Charge(
                id=new_id("ch_"),
                payment_intent=new_id("pi_"),
                amount=session.amount_total,
                currency=session.currency,
                created=now,
                payment_method=payment_method,
                billing_email=email or session.customer_email,
            )
            intent = PaymentIntent(
                id=charge.payment_intent,
                amount=charge.amount,
                currency=charge.currency,
                metadata=dict(session.payment_intent_metadata),
                created=now,
                latest_charge=charge.id,
                payment_method=payment_method,
                client_secret=f"{charge.payment_intent}_secret_{new_id('', 25)}",
            )
            self._charges[charge.id] = charge
            self._payment_intents[intent.id] = intent
            session.status = "complete"
            session.payment_status = "paid"
            session.payment_intent = intent.id
            session.customer_details = {
                "address": None,
                "email": charge.billing_email,
                "name": None,
                "phone": None,
                "tax_exempt": "none",
                "tax_ids": [],
            }
            self._emit("checkout.session.completed", session.to_json(), emitted)
            return copy.deepcopy(session)

    def cancel_session(self, session_id: str) -> CheckoutSession:
        """The customer gave up on the hosted page: the session expires (the shop's contract)."""
        with self._changing() as emitted:
            session = self._open_session(session_id, emitted)
            self._expire(session, emitted)
            return copy.deepcopy(session)

    def peek_session(self, session_id: str) -> CheckoutSession:
        """A copy for the hosted pages, after expiring it if its time is up."""
        with self._changing() as emitted:
            return copy.deepcopy(self._session(session_id, emitted))

    def expire_due_sessions(self) -> int:
        with self._changing() as emitted:
            now = time.time()
            due = [s for s in self._sessions.values() if s.status == "open" and s.expires_at <= now]
            for session in due:
                self._expire(session, emitted)
            return len(due)

    def _session(self, session_id: str, emitted: list[EventRecord]) -> CheckoutSession:
        session = self._sessions.get(session_id)
        if session is None:
            raise resource_missing("checkout.session", session_id)
        # Stripe expires sessions shortly after `expires_at`; checking on every read makes that
        # visible at once without waiting for the sweeper.
        if session.status == "open" and session.expires_at <= time.time():
            self._expire(session, emitted)
        return session

    def _open_session(self, session_id: str, emitted: list[EventRecord]) -> CheckoutSession:
        session = self._session(session_id, emitted)
        if session.status != "open":
            raise StripeError(409, f"This Checkout Session is no longer open (status {session.status}).")
        return session

    def _expire(self, session: CheckoutSession, emitted: list[EventRecord]) -> None:
        session.status = "expired"
        self._emit("checkout.session.expired", session.to_json(), emitted)

    def _session_json(self, session: CheckoutSession, expand: list[str]) -> dict[str, Any]:
        body = session.to_json()
        if "payment_intent" in expand and session.payment_intent:
            body["payment_intent"] = self._payment_intents[session.payment_intent].to_json()
        if "line_items" in expand:
            body["line_items"] = {
                "object": "list",
                "data": [item.to_json() for item in session.line_items],
                "has_more": False,
                "url": f"/v1/checkout/sessions/{session.id}/line_items",
            }
        return body

    # Payment intents, charges, refunds

    def get_payment_intent(self, intent_id: str) -> dict[str, Any]:
        with self._lock:
            intent = self._payment_intents.get(intent_id)
            if intent is None:
                raise resource_missing("payment_intent", intent_id)
            return intent.to_json()

    def get_charge(self, charge_id: str) -> dict[str, Any]:
        with self._lock:
            charge = self._charges.get(charge_id)
            if charge is None:
                raise resource_missing("charge", charge_id)
            return charge.to_json()

    def create_refund(self, params: dict[str, Any]) -> dict[str, Any]:
        p.reject_unknown(params, REFUND_PARAMS)
        intent_id = p.opt_str(params, "payment_intent")
        charge_id = p.opt_str(params, "charge")
        if not intent_id and not charge_id:
            raise parameter_missing("payment_intent")
        amount = p.opt_int(params, "amount")
        if amount is not None and amount <= 0:
            raise parameter_invalid("amount", "Invalid positive integer", code="parameter_invalid_integer")
        reason = p.opt_str(params, "reason")
        if reason is not None and reason not in REFUND_REASONS:
            raise parameter_invalid("reason", f"Invalid reason: must be one of {', '.join(sorted(REFUND_REASONS))}")
        refund_metadata = p.metadata(params)
        with self._changing() as emitted:
            charge = self._refundable_charge(intent_id, charge_id)
            if charge.remaining <= 0:
                raise StripeError(
                    400,
                    f"Charge {charge.id} has already been refunded.",
                    code="charge_already_refunded",
                    saved=True,
                )
            amount = charge.remaining if amount is None else amount
            if amount > charge.remaining:
                raise StripeError(
                    400,
                    f"Refund amount ({amount}) is greater than unrefunded amount on charge ({charge.remaining}).",
                    code="amount_too_large",
                    param="amount",
                    saved=True,
                )
            refund = Refund(
                id=new_id("re_"),
                amount=amount,
                currency=charge.currency,
                charge=charge.id,
                payment_intent=charge.payment_intent,
                reason=reason,
                metadata=refund_metadata,
                created=int(time.time()),
            )
            previous = {"amount_refunded": charge.amount_refunded, "refunded": charge.to_json()["refunded"]}
            charge.amount_refunded += amount
            self._refunds[refund.id] = refund
            self._emit("charge.refunded", charge.to_json(), emitted, previous_attributes=previous)
            return refund.to_json()

    def _refundable_charge(self, intent_id: str | None, charge_id: str | None) -> Charge:
        if intent_id:
            intent = self._payment_intents.get(intent_id)
            if intent is None:
                raise resource_missing("payment_intent", intent_id, param="payment_intent")
            charge = self._charges[intent.latest_charge]
            if charge_id and charge_id != charge.id:
                raise parameter_invalid("charge", "The charge does not belong to this payment intent.")
            return charge
        assert charge_id is not None
        found = self._charges.get(charge_id)
        if found is None:
            raise resource_missing("charge", charge_id, param="charge")
        return found

    def get_refund(self, refund_id: str) -> dict[str, Any]:
        with self._lock:
            refund = self._refunds.get(refund_id)
            if refund is None:
                raise resource_missing("refund", refund_id)
            return refund.to_json()

    def list_refunds(self, params: dict[str, Any]) -> dict[str, Any]:
        intent_id = p.opt_str(params, "payment_intent")
        charge_id = p.opt_str(params, "charge")
        limit = p.opt_int(params, "limit")
        limit = 10 if limit is None else limit
        if not 1 <= limit <= 100:
            raise parameter_invalid(
                "limit", "Invalid limit: must be between 1 and 100", code="parameter_invalid_integer"
            )
        starting_after = p.opt_str(params, "starting_after")
        ending_before = p.opt_str(params, "ending_before")
        with self._lock:
            if intent_id and intent_id not in self._payment_intents:
                raise resource_missing("payment_intent", intent_id, param="payment_intent")
            # Newest first, as Stripe lists; insertion order breaks ties within one second.
            refunds = [
                r
                for r in reversed(self._refunds.values())
                if (not intent_id or r.payment_intent == intent_id) and (not charge_id or r.charge == charge_id)
            ]
            ids = [r.id for r in refunds]
            if starting_after:
                if starting_after not in ids:
                    raise resource_missing("refund", starting_after, param="starting_after")
                refunds = refunds[ids.index(starting_after) + 1 :]
            elif ending_before:
                if ending_before not in ids:
                    raise resource_missing("refund", ending_before, param="ending_before")
                refunds = refunds[: ids.index(ending_before)][-limit:]
            page = refunds[:limit]
            return {
                "object": "list",
                "data": [r.to_json() for r in page],
                "has_more": len(refunds) > len(page),
                "url": "/v1/refunds",
            }

    # Events

    def _emit(
        self,
        event_type: str,
        data_object: dict[str, Any],
        emitted: list[EventRecord],
        *,
        previous_attributes: dict[str, Any] | None = None,
    ) -> None:
        data: dict[str, Any] = {"object": data_object}
        if previous_attributes is not None:
            data["previous_attributes"] = previous_attributes
        payload: dict[str, Any] = {
            "id": new_id("evt_"),
            "object": "event",
            "api_version": self.api_version,
            "created": int(time.time()),
            "data": data,
            "livemode": False,
            "pending_webhooks": 1,
            "request": {"id": None, "idempotency_key": None},
            "type": event_type,
        }
        record = EventRecord(id=payload["id"], type=event_type, payload=payload, body=json.dumps(payload))
        self._events[record.id] = record
        emitted.append(record)

    def get_event(self, event_id: str) -> dict[str, Any]:
        with self._lock:
            record = self._events.get(event_id)
            if record is None:
                raise resource_missing("event", event_id)
            return copy.deepcopy(record.payload)

    def event_record(self, event_id: str) -> EventRecord | None:
        with self._lock:
            return self._events.get(event_id)

    def events_json(self, event_type: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            return [r.to_json() for r in self._events.values() if event_type is None or r.type == event_type]

    def event_json(self, event_id: str) -> dict[str, Any] | None:
        with self._lock:
            record = self._events.get(event_id)
            return None if record is None else record.to_json()

    def record_attempt(self, record: EventRecord, attempt: DeliveryAttempt, *, final: bool) -> None:
        """Note one delivery attempt; `final` means no retry follows if this one failed."""
        with self._lock:
            record.attempts.append(attempt)
            if attempt.succeeded:
                record.delivery_status = "delivered"
            elif final and record.delivery_status != "delivered":
                record.delivery_status = "failed"
            elif record.delivery_status != "delivered":
                record.delivery_status = "pending"

    def mark_delivery(self, record: EventRecord, status: str) -> None:
        with self._lock:
            record.delivery_status = status
