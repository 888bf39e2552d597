"""The merchant's side of a payment: Create, Execute (the only step that takes money), Query, Search."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from sandbox.bkash_sandbox.account import OK, MerchantAccount, parse_amount, require, text_of
from sandbox.bkash_sandbox.customer import callback_url
from sandbox.bkash_sandbox.errors import BkashError
from sandbox.bkash_sandbox.objects import CustomerStep, Payment, Token, TransactionStatus, bkash_time, random_code
from sandbox.web import is_web_url

# 01929918378 is the shop's documented insufficient-balance wallet; 01823074817 is bKash's own.
INSUFFICIENT_BALANCE_WALLETS = frozenset({"01929918378", "01823074817"})


def create_payment(account: MerchantAccount, token: Token, body: Mapping[str, Any], hosted_base: str) -> dict[str, Any]:
    mode, callback, _, currency, intent, invoice = require(
        body, "mode", "callbackURL", "amount", "currency", "intent", "merchantInvoiceNumber"
    )
    _check_create(mode, intent, currency, callback, invoice)
    parsed = parse_amount(body.get("amount"))
    if parsed is None:
        raise BkashError("2006")
    with account.changing() as change:
        account.stats.create += 1
        if invoice in account.paid_invoices:
            raise BkashError("2029")
        payment = Payment(
            payment_id=f"TR0011{random_code(14)}",
            app_key=token.app_key,
            amount=parsed[0],
            amount_text=parsed[1],
            currency=currency,
            intent=intent,
            mode=mode,
            payer_reference=text_of(body, "payerReference") or " ",
            merchant_invoice_number=invoice,
            callback_url=callback,
            created_at=time.time(),
        )
        account.payments[payment.payment_id] = payment
        change.touch_payment(payment)
        return {
            **OK,
            "paymentID": payment.payment_id,
            "bkashURL": f"{hosted_base}/checkout/{payment.payment_id}",
            "callbackURL": payment.callback_url,
            "successCallbackURL": callback_url(account, payment, "success"),
            "failureCallbackURL": callback_url(account, payment, "failure"),
            "cancelledCallbackURL": callback_url(account, payment, "cancel"),
            "amount": payment.amount_text,
            "intent": payment.intent,
            "currency": payment.currency,
            "paymentCreateTime": bkash_time(payment.created_at),
            "transactionStatus": payment.status.value,
            "merchantInvoiceNumber": payment.merchant_invoice_number,
        }


def _check_create(mode: str, intent: str, currency: str, callback: str, invoice: str) -> None:
    if mode != "0011":
        raise BkashError("2063")
    if intent != "sale":
        raise BkashError("2008")
    if currency != "BDT":
        raise BkashError("2007")
    if not is_web_url(callback):
        raise BkashError("2049")
    if len(invoice) > 255:
        raise BkashError("2025")


def execute(account: MerchantAccount, body: Mapping[str, Any]) -> dict[str, Any]:
    (payment_id,) = require(body, "paymentID")
    with account.changing() as change:
        account.stats.execute += 1
        payment = account.payment(payment_id)
        payment.execute_calls += 1
        change.touch_payment(payment)
        _check_executable(payment)
        if payment.wallet in INSUFFICIENT_BALANCE_WALLETS:
            payment.status = TransactionStatus.FAILED
            payment.failure_code = "2023"
            raise BkashError("2023")
        payment.status = TransactionStatus.COMPLETED
        payment.trx_id = random_code(10)
        payment.executed_at = time.time()
        payment.execute_successes += 1
        account.payment_by_trx[payment.trx_id] = payment.payment_id
        account.paid_invoices.add(payment.merchant_invoice_number)
        account.stats.execute_completed += 1
        return {
            **OK,
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


def _check_executable(payment: Payment) -> None:
    if payment.status is TransactionStatus.COMPLETED:
        # Money is taken once; a repeated Execute only learns that it already happened.
        raise BkashError("2117")
    if payment.status is TransactionStatus.CANCELLED:
        raise BkashError("2069")
    if payment.status is TransactionStatus.FAILED and payment.failure_code == "2023":
        raise BkashError("2023")
    if payment.status is not TransactionStatus.INITIATED or payment.step is not CustomerStep.AUTHORIZED:
        raise BkashError("2056")


def query(account: MerchantAccount, body: Mapping[str, Any]) -> dict[str, Any]:
    (payment_id,) = require(body, "paymentID")
    with account.lock:
        account.stats.query += 1
        payment = account.payment(payment_id)
        answer: dict[str, Any] = {
            **OK,
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


def search(account: MerchantAccount, body: Mapping[str, Any]) -> dict[str, Any]:
    (trx_id,) = require(body, "trxID")
    with account.lock:
        account.stats.search += 1
        payment_id = account.payment_by_trx.get(trx_id)
        if payment_id is None:
            raise BkashError("2033")
        payment = account.payments[payment_id]
        assert payment.executed_at is not None
        return {
            **OK,
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
