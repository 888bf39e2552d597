"""bKash as a PaymentProvider: Create Payment to open, Execute (then Query when unsure) to complete,
Query to look up, partial refunds; every answer read into a verdict. bKash has no call that closes a
created payment: it expires on its own, and a cancelled payment is simply never executed."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from payments.audit import ProviderLog
from payments.domain import (
    BKASH_ALREADY_REFUNDED,
    BKASH_REFUND_REFUSALS,
    BkashOutcome,
    bkash_amount,
    bkash_error,
    classify_execute,
    classify_query,
    money,
)
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
from payments.providers.bkash_client import NAME, BkashClient, BkashRefused, BkashUnavailable
from payments.settings import PaymentsSettings

# PROVIDERS.md: several partial refunds of one payment, at most 10.
MAX_REFUNDS = 10
OUTCOMES = {
    BkashOutcome.COMPLETED: Outcome.PAID,
    BkashOutcome.FAILED: Outcome.FAILED,
    BkashOutcome.CANCELLED: Outcome.CANCELLED,
    BkashOutcome.PENDING: Outcome.PENDING,
    BkashOutcome.UNCLEAR: Outcome.UNKNOWN,
}


class BkashProvider:
    name = NAME
    max_refunds: int | None = MAX_REFUNDS
    # Nothing is taken until the shop itself calls Execute.
    completes_on_its_own = False

    def __init__(self, settings: PaymentsSettings, audit: ProviderLog) -> None:
        self.settings = settings
        self.client = BkashClient(settings, audit)

    def refuses_currency(self, currency: str) -> str | None:
        return None if currency == "BDT" else f"bKash takes BDT only; this order is in {currency}"

    def known_secrets(self) -> tuple[str, ...]:
        return self.client.known_tokens()

    def close(self) -> None:
        self.client.close()

    def open(self, checkout: Checkout) -> OpenedPayment:
        body = {
            "mode": "0011",
            "payerReference": str(checkout.user_id)[:32],
            "callbackURL": f"{self.settings.public_url.rstrip('/')}/api/payments/bkash/callback",
            "amount": bkash_amount(checkout.amount),
            "currency": "BDT",
            "intent": "sale",
            "merchantInvoiceNumber": str(checkout.payment_id),
        }
        try:
            answer = self.client.create(body)
        except BkashUnavailable as exc:
            raise ProviderUnavailable(str(exc)) from exc
        except BkashRefused as exc:
            raise ProviderRefused(str(exc)) from exc
        code, message = bkash_error(answer)
        if code is not None or not answer.get("paymentID") or not answer.get("bkashURL"):
            raise ProviderRefused(f"bKash {code or 'unknown'}: {message or 'no paymentID in the answer'}")
        return OpenedPayment(reference=str(answer["paymentID"]), redirect_url=str(answer["bkashURL"]))

    def cancel(self, reference: str) -> None:
        return None

    def complete(self, reference: str) -> ProviderVerdict:
        """Execute once; when its answer is lost or unclear, Query decides (PROVIDERS.md: a lost
        Execute may have completed, and a second Execute never captures twice)."""
        try:
            answer = self.client.execute(reference)
            outcome = classify_execute(answer)
        except (BkashUnavailable, BkashRefused):
            answer, outcome = {}, BkashOutcome.UNCLEAR
        if outcome is BkashOutcome.UNCLEAR:
            return self.lookup(reference)
        return _verdict(reference, outcome, answer, "execute")

    def lookup(self, reference: str) -> ProviderVerdict:
        try:
            answer = self.client.query(reference)
        except (BkashUnavailable, BkashRefused) as exc:
            return ProviderVerdict(NAME, Outcome.UNKNOWN, reference=reference, detail=f"query: {exc}")
        return _verdict(reference, classify_query(answer), answer, "query")

    def refund(self, call: RefundCall) -> RefundResult:
        # bKash takes no idempotency key: before asking again after a lost answer, look whether the
        # first attempt went through.
        if call.retry:
            earlier = self._refund_made_earlier(call)
            if earlier is not None:
                return earlier
        body = {
            "paymentID": call.reference,
            "trxID": call.transaction_id,
            "amount": bkash_amount(call.amount),
            "sku": str(call.order_id)[:255],
            "reason": call.reason[:255],
        }
        try:
            answer = self.client.refund(body)
        except BkashUnavailable as exc:
            raise ProviderUnavailable(str(exc)) from exc
        except BkashRefused as exc:
            raise ProviderRefused(str(exc)) from exc
        return _refund_result(answer)

    def _refund_made_earlier(self, call: RefundCall) -> RefundResult | None:
        try:
            latest = self.client.refund_status(call.reference, call.transaction_id)
        except (BkashUnavailable, BkashRefused) as exc:
            raise ProviderUnavailable(f"bKash refund status: {exc}") from exc
        code, _ = bkash_error(latest)
        refund_id = str(latest.get("refundTrxID") or "")
        if code is not None or not refund_id or refund_id in call.known_refund_ids:
            return None
        if _amount(latest.get("amount")) != money(call.amount):
            return None
        return RefundResult(refund_id)


def _refund_result(answer: dict[str, Any]) -> RefundResult:
    code, message = bkash_error(answer)
    if code == BKASH_ALREADY_REFUNDED:
        return RefundResult(None, already_refunded=True)
    if code in BKASH_REFUND_REFUSALS:
        raise ProviderRefused(f"bKash {code}: {message}")
    if code is not None:
        raise ProviderUnavailable(f"bKash {code}: {message}")
    return RefundResult(str(answer.get("refundTrxID") or "") or None)


def _amount(value: object) -> Decimal | None:
    try:
        return money(str(value)) if value is not None else None
    except ArithmeticError:
        return None


def _verdict(reference: str, outcome: BkashOutcome, answer: dict[str, Any], source: str) -> ProviderVerdict:
    _, message = bkash_error(answer)
    return ProviderVerdict(
        NAME,
        OUTCOMES[outcome],
        reference=reference,
        transaction_id=str(answer.get("trxID") or "") or None,
        amount=_amount(answer.get("amount")),
        currency=str(answer.get("currency") or "") or None,
        detail=f"{source}: {message or answer.get('transactionStatus') or outcome.value}",
    )
