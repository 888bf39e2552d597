"""Refunds (v1.2.0-beta's `payment/refund`): several partial ones up to the captured amount.

At most `MAX_REFUNDS` refunds per payment; each answers a new `refundTrxID`. More than what is left
answers 2026, anything once all is back 2034. The same call with only `paymentID` and `trxID` is
the refund status query: it answers the latest refund.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from sandbox.bkash_sandbox.account import OK, MerchantAccount, parse_amount, require, text_of
from sandbox.bkash_sandbox.errors import BkashError
from sandbox.bkash_sandbox.objects import Payment, RefundRecord, bkash_time, random_code

MAX_REFUNDS = 10
# bKash documents the limit but no code of its own for it; 2074 is its "cannot be reversed".
TOO_MANY_REFUNDS = "2074"


def refund(account: MerchantAccount, body: Mapping[str, Any]) -> dict[str, Any]:
    payment_id, trx_id = require(body, "paymentID", "trxID")
    status_only = all(text_of(body, name) is None for name in ("amount", "sku", "reason"))
    with account.changing() as change:
        account.stats.refund += 1
        payment = account.payment(payment_id)
        if payment.trx_id is None or payment.trx_id != trx_id:
            raise BkashError("2033")
        if status_only:
            if not payment.refunds:
                raise BkashError("2033")
            return _refund_json(payment, payment.refunds[-1])
        _, sku, reason = require(body, "amount", "sku", "reason")
        amount = _refund_amount(payment, body.get("amount"))
        record = RefundRecord(
            refund_trx_id=random_code(10),
            amount=amount[0],
            amount_text=amount[1],
            sku=sku,
            reason=reason,
            completed_at=time.time(),
        )
        payment.refunds.append(record)
        change.touch_payment(payment)
        return _refund_json(payment, record)


def _refund_amount(payment: Payment, value: object) -> tuple[Decimal, str]:
    parsed = parse_amount(value)
    if parsed is None:
        raise BkashError("2006")
    remaining = payment.amount - payment.refunded
    if remaining <= 0:
        raise BkashError("2034")
    if parsed[0] > remaining:
        raise BkashError("2026")
    if len(payment.refunds) >= MAX_REFUNDS:
        raise BkashError(TOO_MANY_REFUNDS)
    return parsed


def _refund_json(payment: Payment, record: RefundRecord) -> dict[str, Any]:
    return {
        **OK,
        "originalTrxID": payment.trx_id,
        "refundTrxID": record.refund_trx_id,
        "transactionStatus": "Completed",
        "amount": record.amount_text,
        "currency": payment.currency,
        "charge": "0.00",
        "completedTime": bkash_time(record.completed_at),
    }
