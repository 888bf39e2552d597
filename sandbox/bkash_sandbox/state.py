"""The fake bKash merchant account: tokens, payments, the customer's steps, refunds.

All state sits behind one lock and each method is one atomic step, so two Execute calls racing
for the same payment can never both take the money.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import re
import secrets
import threading
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from decimal import Decimal
from typing import Any

from sandbox.bkash_sandbox.errors import SUCCESS, BkashError, Unauthorized
from sandbox.bkash_sandbox.objects import (
    CustomerStep,
    Payment,
    RefundRecord,
    Token,
    TransactionStatus,
    bkash_time,
    random_code,
)
from sandbox.bkash_sandbox.settings import BkashSandboxSettings
from sandbox.web import is_web_url, with_query

API_VERSION = "1.2.0-beta"
TEST_WALLETS = frozenset(
    {"01770618575", "01929918378", "01770618576", "01877722345", "01619777282", "01619777283", "01823074817"}
)
# 01929918378 is the shop's documented insufficient-balance wallet; 01823074817 is bKash's own.
INSUFFICIENT_BALANCE_WALLETS = frozenset({"01929918378", "01823074817"})
TEST_OTP = "123456"
TEST_PIN = "12121"
_AMOUNT = re.compile(r"^\d+(\.\d{1,2})?$")
_OK = {"statusCode": SUCCESS, "statusMessage": "Successful"}


def parse_amount(value: object) -> tuple[Decimal, str] | None:
    """A positive amount with at most two decimals, sent as a string ("10.50") or a JSON number."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        return None
    text = value.strip() if isinstance(value, str) else str(value)
    if not _AMOUNT.match(text) or Decimal(text) <= 0:
        return None
    return Decimal(text), text


def _text(body: Mapping[str, Any], name: str) -> str | None:
    """A field's value as text; numbers are accepted (clients differ), empty means missing."""
    value = body.get(name)
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        value = str(value)
    if not isinstance(value, str) or not value.strip():
        return None
    return value.strip()


def _require(body: Mapping[str, Any], *names: str) -> list[str]:
    values = [_text(body, name) for name in names]
    if any(value is None for value in values):
        raise BkashError("2065")
    return [value for value in values if value is not None]


@dataclass
class Stats:
    grant: int = 0
    refresh: int = 0
    create: int = 0
    execute: int = 0
    execute_completed: int = 0
    query: int = 0
    search: int = 0
    refund: int = 0
    unauthorized: int = 0


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


class MerchantAccount:
    def __init__(self, settings: BkashSandboxSettings) -> None:
        self._settings = settings
        self._lock = threading.Lock()
        self._tokens: dict[str, Token] = {}
        self._refresh_tokens: dict[str, Token] = {}
        self._payments: dict[str, Payment] = {}
        self._payment_by_trx: dict[str, str] = {}
        self._stats = Stats()

    # Tokens

    def grant(self, username: str | None, password: str | None, body: Mapping[str, Any]) -> dict[str, Any]:
        with self._lock:
            self._check_merchant_user(username, password)
            app_key, app_secret = _require(body, "app_key", "app_secret")
            self._check_app(app_key, app_secret)
            self._stats.grant += 1
            return self._token_json(self._issue_token(app_key, refresh_token=None))

    def refresh(self, username: str | None, password: str | None, body: Mapping[str, Any]) -> dict[str, Any]:
        with self._lock:
            self._check_merchant_user(username, password)
            app_key, app_secret, refresh_token = _require(body, "app_key", "app_secret", "refresh_token")
            self._check_app(app_key, app_secret)
            previous = self._refresh_tokens.get(refresh_token)
            if previous is None or previous.refresh_expires_at <= time.time() or previous.app_key != app_key:
                self._stats.unauthorized += 1
                raise Unauthorized
            self._stats.refresh += 1
            return self._token_json(self._issue_token(app_key, refresh_token=previous))

    def authorize(self, id_token: str | None, app_key: str | None) -> Token:
        """The token an API call carries (`Authorization: <id_token>`, no "Bearer") and its app key."""
        with self._lock:
            token = self._tokens.get(id_token or "")
            if token is None or token.expires_at <= time.time():
                self._stats.unauthorized += 1
                raise Unauthorized
            if app_key != token.app_key:
                raise BkashError("2001")
            return token

    def _check_merchant_user(self, username: str | None, password: str | None) -> None:
        if not (
            secrets.compare_digest(username or "", self._settings.username)
            and secrets.compare_digest(password or "", self._settings.password)
        ):
            self._stats.unauthorized += 1
            raise Unauthorized

    def _check_app(self, app_key: str, app_secret: str) -> None:
        if not (
            secrets.compare_digest(app_key, self._settings.app_key)
            and secrets.compare_digest(app_secret, self._settings.app_secret)
        ):
            raise BkashError("2001")

    def _issue_token(self, app_key: str, refresh_token: Token | None) -> Token:
        now = time.time()
        token = Token(
            id_token=secrets.token_urlsafe(48),
            # A refresh keeps the refresh token (and its lifetime), as bKash does.
            refresh_token=refresh_token.refresh_token if refresh_token else secrets.token_urlsafe(48),
            app_key=app_key,
            expires_at=now + self._settings.token_lifetime,
            refresh_expires_at=(
                refresh_token.refresh_expires_at if refresh_token else now + self._settings.refresh_token_lifetime
            ),
        )
        self._tokens[token.id_token] = token
        self._refresh_tokens[token.refresh_token] = token
        return token

    def _token_json(self, token: Token) -> dict[str, Any]:
        return {
            **_OK,
            "id_token": token.id_token,
            "token_type": "Bearer",
            "expires_in": self._settings.token_lifetime,
            "refresh_token": token.refresh_token,
        }

    # Payments, the merchant's side

    def create_payment(self, token: Token, body: Mapping[str, Any], hosted_base: str) -> dict[str, Any]:
        mode, callback_url, _, currency, intent, invoice = _require(
            body, "mode", "callbackURL", "amount", "currency", "intent", "merchantInvoiceNumber"
        )
        if mode != "0011":
            raise BkashError("2063")
        if intent != "sale":
            raise BkashError("2008")
        if currency != "BDT":
            raise BkashError("2007")
        parsed = parse_amount(body.get("amount"))
        if parsed is None:
            raise BkashError("2006")
        if not is_web_url(callback_url):
            raise BkashError("2049")
        if len(invoice) > 255:
            raise BkashError("2025")
        with self._lock:
            self._stats.create += 1
            # bKash refuses a second payment for an invoice that was already paid.
            if any(
                p.merchant_invoice_number == invoice and p.status is TransactionStatus.COMPLETED
                for p in self._payments.values()
            ):
                raise BkashError("2029")
            payment = Payment(
                payment_id=f"TR0011{random_code(14)}",
                app_key=token.app_key,
                amount=parsed[0],
                amount_text=parsed[1],
                currency=currency,
                intent=intent,
                mode=mode,
                payer_reference=_text(body, "payerReference") or " ",
                merchant_invoice_number=invoice,
                callback_url=callback_url,
                created_at=time.time(),
            )
            self._payments[payment.payment_id] = payment
            return {
                **_OK,
                "paymentID": payment.payment_id,
                "bkashURL": f"{hosted_base}/checkout/{payment.payment_id}",
                "callbackURL": payment.callback_url,
                "successCallbackURL": self.callback_url(payment, "success"),
                "failureCallbackURL": self.callback_url(payment, "failure"),
                "cancelledCallbackURL": self.callback_url(payment, "cancel"),
                "amount": payment.amount_text,
                "intent": payment.intent,
                "currency": payment.currency,
                "paymentCreateTime": bkash_time(payment.created_at),
                "transactionStatus": payment.status.value,
                "merchantInvoiceNumber": payment.merchant_invoice_number,
            }

    def execute(self, body: Mapping[str, Any]) -> dict[str, Any]:
        (payment_id,) = _require(body, "paymentID")
        with self._lock:
            self._stats.execute += 1
            payment = self._payment(payment_id)
            payment.execute_calls += 1
            if payment.status is TransactionStatus.COMPLETED:
                # Money is taken once; a repeated Execute only learns that it already happened.
                raise BkashError("2117")
            if payment.status is TransactionStatus.CANCELLED:
                raise BkashError("2069")
            if payment.status is TransactionStatus.FAILED and payment.failure_code == "2023":
                raise BkashError("2023")
            if payment.status is not TransactionStatus.INITIATED or payment.step is not CustomerStep.AUTHORIZED:
                raise BkashError("2056")
            if payment.wallet in INSUFFICIENT_BALANCE_WALLETS:
                payment.status = TransactionStatus.FAILED
                payment.failure_code = "2023"
                raise BkashError("2023")
            payment.status = TransactionStatus.COMPLETED
            payment.trx_id = random_code(10)
            payment.executed_at = time.time()
            payment.execute_successes += 1
            self._payment_by_trx[payment.trx_id] = payment.payment_id
            self._stats.execute_completed += 1
            return {
                **_OK,
                "paymentID": payment.payment_id,
                "payerReference": payment.payer_reference,
                "customerMsisdn": payment.wallet,
                "trxID": payment.trx_id,
                "amount": payment.amount_text,
                "transactionStatus": payment.status.value,
                "paymentExecuteTime": bkash_time(payment.executed_at),
                "currency": payment.currency,
                "intent": payment.intent,
                "merchantInvoiceNumber": payment.merchant_invoice_number,
            }

    def query(self, body: Mapping[str, Any]) -> dict[str, Any]:
        (payment_id,) = _require(body, "paymentID")
        with self._lock:
            self._stats.query += 1
            payment = self._payment(payment_id)
            answer: dict[str, Any] = {
                **_OK,
                "paymentID": payment.payment_id,
                "mode": payment.mode,
                "paymentCreateTime": bkash_time(payment.created_at),
                "amount": payment.amount_text,
                "currency": payment.currency,
                "intent": payment.intent,
                "merchantInvoice": payment.merchant_invoice_number,
                "transactionStatus": payment.status.value,
                "verificationStatus": "Complete" if payment.step is CustomerStep.AUTHORIZED else "Incomplete",
                "payerReference": payment.payer_reference,
            }
            if payment.trx_id and payment.executed_at:
                answer["trxID"] = payment.trx_id
                answer["paymentExecuteTime"] = bkash_time(payment.executed_at)
                answer["customerMsisdn"] = payment.wallet
            return answer

    def search(self, body: Mapping[str, Any]) -> dict[str, Any]:
        (trx_id,) = _require(body, "trxID")
        with self._lock:
            self._stats.search += 1
            payment_id = self._payment_by_trx.get(trx_id)
            if payment_id is None:
                raise BkashError("2033")
            payment = self._payments[payment_id]
            assert payment.executed_at is not None
            return {
                **_OK,
                "trxID": trx_id,
                "transactionStatus": payment.status.value,
                "amount": payment.amount_text,
                "currency": payment.currency,
                "customerMsisdn": payment.wallet,
                "initiationTime": bkash_time(payment.created_at),
                "completedTime": bkash_time(payment.executed_at),
                "transactionType": "bKash Tokenized Checkout via API",
                "transactionReference": payment.merchant_invoice_number,
            }

    def refund(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """Refund, or (with only paymentID and trxID) ask how the last refund went, as v1.2.0-beta does."""
        payment_id, trx_id = _require(body, "paymentID", "trxID")
        status_only = all(_text(body, name) is None for name in ("amount", "sku", "reason"))
        with self._lock:
            self._stats.refund += 1
            payment = self._payment(payment_id)
            if payment.trx_id is None or payment.trx_id != trx_id:
                raise BkashError("2033")
            if status_only:
                if not payment.refunds:
                    raise BkashError("2033")
                return self._refund_json(payment, payment.refunds[-1])
            _, sku, reason = _require(body, "amount", "sku", "reason")
            parsed = parse_amount(body.get("amount"))
            if parsed is None:
                raise BkashError("2006")
            remaining = payment.amount - payment.refunded
            if remaining <= 0:
                raise BkashError("2034")
            if parsed[0] > remaining:
                raise BkashError("2026")
            refund = RefundRecord(
                refund_trx_id=random_code(10),
                amount=parsed[0],
                amount_text=parsed[1],
                sku=sku,
                reason=reason,
                completed_at=time.time(),
            )
            payment.refunds.append(refund)
            return self._refund_json(payment, refund)

    @staticmethod
    def _refund_json(payment: Payment, refund: RefundRecord) -> dict[str, Any]:
        return {
            **_OK,
            "originalTrxID": payment.trx_id,
            "refundTrxID": refund.refund_trx_id,
            "transactionStatus": "Completed",
            "amount": refund.amount_text,
            "currency": payment.currency,
            "charge": "0.00",
            "completedTime": bkash_time(refund.completed_at),
        }

    def _payment(self, payment_id: str) -> Payment:
        payment = self._payments.get(payment_id)
        if payment is None:
            raise BkashError("2002")
        # Expiry is applied when the payment is next looked at; nothing else can observe it sooner.
        if (
            payment.status is TransactionStatus.INITIATED
            and time.time() - payment.created_at > self._settings.payment_window
        ):
            payment.status = TransactionStatus.EXPIRED
            payment.step = CustomerStep.ENDED
        return payment

    # Payments, the customer's side (the hosted pages)

    def callback_url(self, payment: Payment, status: str) -> str:
        # The signature only imitates bKash's; merchants must not rely on it (they Execute/Query).
        signature = hmac.new(
            self._settings.app_secret.encode(), f"{payment.payment_id}:{status}".encode(), hashlib.sha256
        ).hexdigest()[:32]
        return with_query(
            payment.callback_url,
            {
                "paymentID": payment.payment_id,
                "status": status,
                "signature": signature,
                "apiVersion": API_VERSION,
            },
        )

    def view(self, payment_id: str) -> Payment:
        with self._lock:
            return copy.deepcopy(self._customer_payment(payment_id))

    def enter_wallet(self, payment_id: str, wallet: str) -> StepResult:
        with self._lock:
            payment = self._customer_payment(payment_id)
            # The customer may go back and enter another number until the PIN is accepted.
            wallet = wallet.strip()
            if not re.fullmatch(r"01\d{9}", wallet):
                return StepResult(copy.deepcopy(payment), error="Enter an 11-digit bKash account number.")
            if wallet not in TEST_WALLETS:
                return StepResult(copy.deepcopy(payment), error="This number is not a bKash sandbox wallet.")
            payment.wallet = wallet
            payment.step = CustomerStep.OTP
            return StepResult(copy.deepcopy(payment), next_step=CustomerStep.OTP)

    def enter_otp(self, payment_id: str, otp: str) -> StepResult:
        with self._lock:
            payment = self._customer_payment(payment_id)
            if payment.step is not CustomerStep.OTP:
                return StepResult(copy.deepcopy(payment), next_step=payment.step)
            if otp.strip() != TEST_OTP:
                return self._fail(payment, "2010")
            payment.step = CustomerStep.PIN
            return StepResult(copy.deepcopy(payment), next_step=CustomerStep.PIN)

    def enter_pin(self, payment_id: str, pin: str) -> StepResult:
        with self._lock:
            payment = self._customer_payment(payment_id)
            if payment.step is not CustomerStep.PIN:
                return StepResult(copy.deepcopy(payment), next_step=payment.step)
            if pin.strip() != TEST_PIN:
                return self._fail(payment, "2014")
            # Authorized, not paid: only the merchant's Execute takes the money.
            payment.step = CustomerStep.AUTHORIZED
            return StepResult(copy.deepcopy(payment), callback_status="success")

    def cancel(self, payment_id: str) -> StepResult:
        with self._lock:
            payment = self._payments.get(payment_id)
            if payment is not None and payment.status is TransactionStatus.CANCELLED:
                # A second click on "cancel" lands where the first did.
                return StepResult(copy.deepcopy(payment), callback_status="cancel")
            payment = self._customer_payment(payment_id)
            payment.status = TransactionStatus.CANCELLED
            payment.step = CustomerStep.ENDED
            return StepResult(copy.deepcopy(payment), callback_status="cancel")

    def _fail(self, payment: Payment, code: str) -> StepResult:
        # A wrong OTP or PIN ends the attempt at once; the merchant may create a new payment.
        payment.status = TransactionStatus.FAILED
        payment.step = CustomerStep.ENDED
        payment.failure_code = code
        return StepResult(copy.deepcopy(payment), callback_status="failure")

    def _customer_payment(self, payment_id: str) -> Payment:
        try:
            payment = self._payment(payment_id)
        except BkashError:
            raise NotPayable("No such payment.", status_code=404) from None
        if payment.status is not TransactionStatus.INITIATED:
            raise NotPayable(f"This payment is {payment.status.value.lower()} and can no longer be paid.")
        if payment.step is CustomerStep.AUTHORIZED:
            raise NotPayable("This payment is already authorized; return to the merchant.")
        return payment

    # Test controls

    def payment_state(self, payment_id: str) -> dict[str, Any] | None:
        with self._lock:
            payment = self._payments.get(payment_id)
            return None if payment is None else payment.control_json()

    def payments_state(self) -> list[dict[str, Any]]:
        with self._lock:
            return [payment.control_json() for payment in self._payments.values()]

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {**asdict(self._stats), "payments": len(self._payments)}

    def expire_tokens(self) -> int:
        with self._lock:
            for token in self._tokens.values():
                token.expires_at = 0
            return len(self._tokens)

    def expire_payment(self, payment_id: str) -> dict[str, Any] | None:
        with self._lock:
            payment = self._payments.get(payment_id)
            if payment is None:
                return None
            if payment.status is TransactionStatus.INITIATED:
                payment.status = TransactionStatus.EXPIRED
                payment.step = CustomerStep.ENDED
            return payment.control_json()

    def reset(self) -> None:
        with self._lock:
            self._tokens.clear()
            self._refresh_tokens.clear()
            self._payments.clear()
            self._payment_by_trx.clear()
            self._stats = Stats()
