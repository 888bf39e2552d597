"""The customer's side of a payment, on the hosted pages: wallet number, OTP, PIN, or cancel."""

from __future__ import annotations

import copy
import hashlib
import hmac
import re
from dataclasses import dataclass

from sandbox.bkash_sandbox.account import API_VERSION, Change, MerchantAccount
from sandbox.bkash_sandbox.errors import BkashError
from sandbox.bkash_sandbox.objects import CustomerStep, Payment, TransactionStatus
from sandbox.web import with_query

TEST_WALLETS = frozenset(
    {"01770618575", "01929918378", "01770618576", "01877722345", "01619777282", "01619777283", "01823074817"}
)
TEST_OTP = "123456"
TEST_PIN = "12121"
_WALLET = re.compile(r"01\d{9}")


class NotPayable(Exception):
    """The customer is on a page of a payment that can no longer be paid (or does not exist)."""

    def __init__(self, message: str, status_code: int = 409) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code


@dataclass(frozen=True)
class StepResult:
    """Where the customer goes after submitting a step.

    `next_step` names a page of ours to show; `callback_status` sends the browser back to the
    merchant; `error` re-shows the current form with a message.
    """

    payment: Payment
    next_step: CustomerStep | None = None
    callback_status: str | None = None
    error: str | None = None


def callback_url(account: MerchantAccount, payment: Payment, status: str) -> str:
    # The signature only imitates bKash's; merchants must not rely on it (they Execute/Query).
    signature = hmac.new(
        account.settings.app_secret.encode(), f"{payment.payment_id}:{status}".encode(), hashlib.sha256
    ).hexdigest()[:32]
    query = {"paymentID": payment.payment_id, "status": status, "signature": signature, "apiVersion": API_VERSION}
    return with_query(payment.callback_url, query)


def view(account: MerchantAccount, payment_id: str) -> Payment:
    with account.lock:
        return copy.copy(_payable(account, payment_id))


def enter_wallet(account: MerchantAccount, payment_id: str, wallet: str) -> StepResult:
    with account.changing() as change:
        payment = _payable(account, payment_id)
        # The customer may go back and enter another number until the PIN is accepted.
        wallet = wallet.strip()
        if not _WALLET.fullmatch(wallet):
            return StepResult(copy.copy(payment), error="Enter an 11-digit bKash account number.")
        if wallet not in TEST_WALLETS:
            return StepResult(copy.copy(payment), error="This number is not a bKash sandbox wallet.")
        payment.wallet = wallet
        return _advance(change, payment, CustomerStep.OTP)


def enter_otp(account: MerchantAccount, payment_id: str, otp: str) -> StepResult:
    with account.changing() as change:
        payment = _payable(account, payment_id)
        if payment.step is not CustomerStep.OTP:
            return StepResult(copy.copy(payment), next_step=payment.step)
        if otp.strip() != TEST_OTP:
            return _fail(change, payment, "2010")
        return _advance(change, payment, CustomerStep.PIN)


def enter_pin(account: MerchantAccount, payment_id: str, pin: str) -> StepResult:
    with account.changing() as change:
        payment = _payable(account, payment_id)
        if payment.step is not CustomerStep.PIN:
            return StepResult(copy.copy(payment), next_step=payment.step)
        if pin.strip() != TEST_PIN:
            return _fail(change, payment, "2014")
        # Authorized, not paid: only the merchant's Execute takes the money.
        payment.step = CustomerStep.AUTHORIZED
        change.touch_payment(payment)
        return StepResult(copy.copy(payment), callback_status="success")


def cancel(account: MerchantAccount, payment_id: str) -> StepResult:
    with account.changing() as change:
        payment = account.payments.get(payment_id)
        if payment is not None and payment.status is TransactionStatus.CANCELLED:
            # A second click on "cancel" lands where the first did.
            return StepResult(copy.copy(payment), callback_status="cancel")
        payment = _payable(account, payment_id)
        payment.status = TransactionStatus.CANCELLED
        payment.step = CustomerStep.ENDED
        change.touch_payment(payment)
        return StepResult(copy.copy(payment), callback_status="cancel")


def _advance(change: Change, payment: Payment, step: CustomerStep) -> StepResult:
    payment.step = step
    change.touch_payment(payment)
    return StepResult(copy.copy(payment), next_step=step)


def _fail(change: Change, payment: Payment, code: str) -> StepResult:
    # A wrong OTP or PIN ends the attempt at once; the merchant may create a new payment.
    payment.status = TransactionStatus.FAILED
    payment.step = CustomerStep.ENDED
    payment.failure_code = code
    change.touch_payment(payment)
    return StepResult(copy.copy(payment), callback_status="failure")


def _payable(account: MerchantAccount, payment_id: str) -> Payment:
    try:
        payment = account.payment(payment_id)
    except BkashError:
        raise NotPayable("No such payment.", status_code=404) from None
    if payment.status is not TransactionStatus.INITIATED:
        raise NotPayable(f"This payment is {payment.status.value.lower()} and can no longer be paid.")
    if payment.step is CustomerStep.AUTHORIZED:
        raise NotPayable("This payment is already authorized; return to the merchant.")
    return payment
