"""Refunds, full or partial, through the API or "in the dashboard" (the control of the same name).

Several refunds may be made until their sum reaches the captured amount; each one emits
`charge.refunded` (the charge with its cumulative `amount_refunded`, `refunded` only once all is
back, and its refunds) and `refund.created`, whoever made it.
"""

from __future__ import annotations

import time
from typing import Any

from sandbox.stripe_sandbox import params as p
from sandbox.stripe_sandbox.account import StripeAccount
from sandbox.stripe_sandbox.charges import charge_json
from sandbox.stripe_sandbox.errors import StripeError, parameter_invalid, parameter_missing, resource_missing
from sandbox.stripe_sandbox.lists import list_page, paging
from sandbox.stripe_sandbox.objects import Charge, Refund, new_id

REFUND_PARAMS = frozenset(
    {"payment_intent", "charge", "amount", "reason", "metadata", "expand", "instructions_email", "origin"}
)
REFUND_REASONS = frozenset({"duplicate", "fraudulent", "requested_by_customer"})
_SYMBOLS = {"usd": "$", "eur": "€", "gbp": "£", "inr": "₹", "bdt": "৳", "jpy": "¥", "cad": "CA$", "aud": "A$"}
_ZERO_DECIMAL = frozenset({"jpy"})


def create_refund(account: StripeAccount, params: dict[str, Any]) -> dict[str, Any]:
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
    metadata = p.metadata(params)
    with account.changing():
        charge = _refundable_charge(account, intent_id, charge_id)
        return refund_charge(account, charge, amount, reason=reason, metadata=metadata)


def dashboard_refund(account: StripeAccount, intent_id: str, amount: int | None) -> dict[str, Any]:
    """A refund made by someone in Stripe's dashboard: nothing but its events tells the shop."""
    with account.changing():
        intent = account.payment_intents.get(intent_id)
        if intent is None:
            raise resource_missing("payment_intent", intent_id)
        return refund_charge(account, account.charges[intent.latest_charge], amount, reason=None, metadata={})


def refund_charge(
    account: StripeAccount, charge: Charge, amount: int | None, *, reason: str | None, metadata: dict[str, str]
) -> dict[str, Any]:
    with account.changing() as change:
        amount = _refund_amount(charge, amount)
        refund = Refund(
            id=new_id("re_"),
            amount=amount,
            currency=charge.currency,
            charge=charge.id,
            payment_intent=charge.payment_intent,
            reason=reason,
            metadata=metadata,
            created=int(time.time()),
        )
        previous = {"amount_refunded": charge.amount_refunded, "refunded": charge.refunded}
        charge.amount_refunded += amount
        charge.refund_ids.append(refund.id)
        account.refunds[refund.id] = refund
        change.touch("refund", refund)
        change.touch("charge", charge)
        account.emit(
            change,
            "charge.refunded",
            charge_json(account, charge, with_refunds=True),
            previous_attributes=previous,
        )
        account.emit(change, "refund.created", refund.to_json())
        return refund.to_json()


def _refund_amount(charge: Charge, amount: int | None) -> int:
    if charge.status != "succeeded":
        raise StripeError(
            400, f"Charge {charge.id} has not been captured and cannot be refunded.", code="charge_not_refundable"
        )
    if charge.remaining <= 0:
        raise StripeError(
            400, f"Charge {charge.id} has already been refunded.", code="charge_already_refunded", saved=True
        )
    if amount is None:
        return charge.remaining
    if amount > charge.remaining:
        raise StripeError(
            400,
            f"Refund amount ({_money(amount, charge.currency)}) is greater than unrefunded amount on charge "
            f"({_money(charge.remaining, charge.currency)})",
            code="amount_too_large",
            param="amount",
            saved=True,
        )
    return amount


def _money(amount: int, currency: str) -> str:
    """An amount as Stripe's error messages print it: `$1,250.00`."""
    symbol = _SYMBOLS.get(currency, f"{currency.upper()} ")
    if currency in _ZERO_DECIMAL:
        return f"{symbol}{amount:,}"
    return f"{symbol}{amount // 100:,}.{amount % 100:02d}"


def _refundable_charge(account: StripeAccount, intent_id: str | None, charge_id: str | None) -> Charge:
    if intent_id:
        intent = account.payment_intents.get(intent_id)
        if intent is None:
            raise resource_missing("payment_intent", intent_id, param="payment_intent")
        charge = account.charges[intent.latest_charge]
        if charge_id and charge_id != charge.id:
            raise parameter_invalid("charge", "The charge does not belong to this payment intent.")
        return charge
    assert charge_id is not None
    found = account.charges.get(charge_id)
    if found is None:
        raise resource_missing("charge", charge_id, param="charge")
    return found


def retrieve_refund(account: StripeAccount, refund_id: str) -> dict[str, Any]:
    with account.lock:
        refund = account.refunds.get(refund_id)
        if refund is None:
            raise resource_missing("refund", refund_id)
        return refund.to_json()


def list_refunds(account: StripeAccount, params: dict[str, Any]) -> dict[str, Any]:
    intent_id = p.opt_str(params, "payment_intent")
    charge_id = p.opt_str(params, "charge")
    page = paging(params)
    with account.lock:
        if intent_id and intent_id not in account.payment_intents:
            raise resource_missing("payment_intent", intent_id, param="payment_intent")
        # Newest first, as Stripe lists; insertion order breaks ties within one second.
        refunds = (
            r
            for r in reversed(account.refunds.values())
            if (not intent_id or r.payment_intent == intent_id) and (not charge_id or r.charge == charge_id)
        )
        return list_page(
            refunds, page, kind="refund", url="/v1/refunds", render=Refund.to_json, exists=account.refunds.__contains__
        )
