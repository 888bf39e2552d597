"""The parameters of `POST /v1/checkout/sessions`, checked and refused the way Stripe words it."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from sandbox.stripe_sandbox import params as p
from sandbox.stripe_sandbox.errors import StripeError, parameter_invalid, parameter_missing, resource_missing
from sandbox.stripe_sandbox.objects import LineItem, new_id

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
# Stripe's bounds for `expires_at`, measured from creation. The lower bound allows a minute of
# slack: a client computes `now + 30 min` a moment before the request arrives.
EXPIRES_MIN_SECONDS = 30 * 60
EXPIRES_MAX_SECONDS = 24 * 60 * 60
EXPIRES_SLACK_SECONDS = 60


@dataclass(frozen=True)
class SessionRequest:
    """A valid session request, ready to become a `CheckoutSession`."""

    created: int
    expires_at: int
    currency: str
    line_items: list[LineItem]
    success_url: str | None
    cancel_url: str | None
    metadata: dict[str, str]
    client_reference_id: str | None
    customer_email: str | None
    locale: str | None
    payment_intent_metadata: dict[str, str]
    expand: list[str]


def session_request(params: dict[str, Any]) -> SessionRequest:
    p.reject_unknown(params, SESSION_PARAMS)
    mode = p.req_str(params, "mode")
    if mode != "payment":
        raise parameter_invalid("mode", f"The sandbox supports only mode=payment, not {mode!r}.")
    # Optional, as in Stripe: without it the hosted page keeps the customer after payment.
    success_url = p.opt_url(params, "success_url")
    cancel_url = p.opt_url(params, "cancel_url")
    line_items = line_items_of(params)
    currency = _one_currency(params, line_items)
    now = int(time.time())
    payment_intent_data = p.opt_dict(params, "payment_intent_data") or {}
    return SessionRequest(
        created=now,
        expires_at=_expires_at(params, now),
        currency=currency,
        line_items=line_items,
        success_url=success_url,
        cancel_url=cancel_url,
        metadata=p.metadata(params),
        client_reference_id=p.opt_str(params, "client_reference_id", max_length=200),
        customer_email=p.opt_str(params, "customer_email", max_length=800),
        locale=p.opt_str(params, "locale"),
        payment_intent_metadata=p.metadata(payment_intent_data, "metadata"),
        expand=p.expand(params),
    )


def _one_currency(params: dict[str, Any], line_items: list[LineItem]) -> str:
    currency = line_items[0].currency
    if "currency" in params and p.currency(params["currency"], "currency") != currency:
        raise parameter_invalid("currency", "The currency must match the currency of the line items.")
    if any(item.currency != currency for item in line_items):
        raise parameter_invalid("line_items", "All line items must use the same currency.")
    if sum(item.amount_total for item in line_items) <= 0:
        raise StripeError(
            400,
            "The Checkout Session's total amount due must be greater than zero.",
            code="amount_too_small",
            param="line_items",
        )
    return currency


def _expires_at(params: dict[str, Any], now: int) -> int:
    expires_at = p.opt_int(params, "expires_at")
    if expires_at is None:
        return now + EXPIRES_MAX_SECONDS
    earliest = now + EXPIRES_MIN_SECONDS - EXPIRES_SLACK_SECONDS
    latest = now + EXPIRES_MAX_SECONDS + EXPIRES_SLACK_SECONDS
    if not earliest <= expires_at <= latest:
        raise parameter_invalid(
            "expires_at",
            "The `expires_at` timestamp must be between 30 minutes and 24 hours from Checkout Session creation.",
            code="parameter_invalid_integer",
        )
    return expires_at


def line_items_of(params: dict[str, Any]) -> list[LineItem]:
    raw = params.get("line_items")
    if raw is None or raw == "":
        raise parameter_missing("line_items")
    if not isinstance(raw, list) or not raw:
        raise parameter_invalid("line_items", "Invalid array: line_items must be a list.")
    return [_line_item(entry, f"line_items[{index}]") for index, entry in enumerate(raw)]


def _line_item(entry: Any, where: str) -> LineItem:
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
    return LineItem(
        id=new_id("li_"),
        name=_product_name(price_data, where),
        currency=p.currency(price_data.get("currency"), f"{where}[price_data][currency]"),
        unit_amount=_unit_amount(price_data, where),
        quantity=_quantity(entry, where),
        price_id=new_id("price_"),
        product_id=new_id("prod_", 14),
    )


def _product_name(price_data: dict[str, Any], where: str) -> str:
    product_data = p.opt_dict(price_data, "product_data")
    if product_data is None:
        raise parameter_missing(f"{where}[price_data][product_data]")
    name = product_data.get("name")
    if not isinstance(name, str) or not name:
        raise parameter_missing(f"{where}[price_data][product_data][name]")
    return name


def _unit_amount(price_data: dict[str, Any], where: str) -> int:
    unit_amount = p.opt_int(price_data, "unit_amount")
    if unit_amount is None:
        raise parameter_missing(f"{where}[price_data][unit_amount]")
    if unit_amount < 0:
        raise parameter_invalid(
            f"{where}[price_data][unit_amount]", "Invalid non-negative integer", code="parameter_invalid_integer"
        )
    return unit_amount


def _quantity(entry: dict[str, Any], where: str) -> int:
    quantity = p.opt_int(entry, "quantity")
    if quantity is None:
        raise parameter_missing(f"{where}[quantity]")
    if quantity < 1:
        raise parameter_invalid(f"{where}[quantity]", "Quantity must be at least 1.", code="parameter_invalid_integer")
    return quantity
