"""Payment intents and charges as the API shows them (with their expansions)."""

from __future__ import annotations

from typing import Any

from sandbox.stripe_sandbox.account import StripeAccount
from sandbox.stripe_sandbox.errors import cannot_expand, resource_missing
from sandbox.stripe_sandbox.lists import Paging, list_page
from sandbox.stripe_sandbox.objects import Charge, PaymentIntent, Refund

# A charge carries its ten most recent refunds; the rest are paged at its refunds URL.
CHARGE_REFUNDS_SHOWN = 10


def retrieve_payment_intent(account: StripeAccount, intent_id: str, expand: list[str]) -> dict[str, Any]:
    cannot_expand(expand, ("latest_charge",))
    with account.lock:
        intent = account.payment_intents.get(intent_id)
        if intent is None:
            raise resource_missing("payment_intent", intent_id)
        return intent_json(account, intent, expand)


def intent_json(account: StripeAccount, intent: PaymentIntent, expand: list[str]) -> dict[str, Any]:
    body = intent.to_json()
    if "latest_charge" in expand:
        body["latest_charge"] = charge_json(account, account.charges[intent.latest_charge], with_refunds=True)
    return body


def retrieve_charge(account: StripeAccount, charge_id: str, expand: list[str]) -> dict[str, Any]:
    # Since API version 2022-11-15 a charge shows its refunds only when asked to.
    cannot_expand(expand, ("refunds",))
    with account.lock:
        return charge_json(account, _charge(account, charge_id), with_refunds="refunds" in expand)


def charge_refunds(account: StripeAccount, charge_id: str, paging: Paging) -> dict[str, Any]:
    with account.lock:
        charge = _charge(account, charge_id)
        return list_page(
            _refunds_newest_first(account, charge),
            paging,
            kind="refund",
            url=f"/v1/charges/{charge.id}/refunds",
            render=Refund.to_json,
            exists=account.refunds.__contains__,
        )


def charge_json(account: StripeAccount, charge: Charge, *, with_refunds: bool) -> dict[str, Any]:
    """The charge; `with_refunds` adds its refunds list, as webhook events and expansions show it."""
    body = charge.to_json()
    if with_refunds:
        newest = reversed(charge.refund_ids[-CHARGE_REFUNDS_SHOWN:])
        shown = [account.refunds[refund_id].to_json() for refund_id in newest]
        body["refunds"] = {
            "object": "list",
            "data": shown,
            "has_more": len(charge.refund_ids) > len(shown),
            "total_count": len(charge.refund_ids),
            "url": f"/v1/charges/{charge.id}/refunds",
        }
    return body


def _refunds_newest_first(account: StripeAccount, charge: Charge) -> list[Refund]:
    return [account.refunds[refund_id] for refund_id in reversed(charge.refund_ids)]


def _charge(account: StripeAccount, charge_id: str) -> Charge:
    charge = account.charges.get(charge_id)
    if charge is None:
        raise resource_missing("charge", charge_id)
    return charge
