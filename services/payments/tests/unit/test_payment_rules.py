"""Pure rules: money conversion, success decisions, bKash answers, redaction, production settings."""

from __future__ import annotations

from decimal import Decimal

import pytest

from payments.domain import (
    BkashOutcome,
    bkash_amount,
    bkash_error,
    classify_execute,
    classify_query,
    decide_on_success,
    redact,
    same_money,
    to_minor_units,
)
from payments.settings import PaymentsSettings

pytestmark = pytest.mark.unit


def test_minor_units_and_bkash_amounts() -> None:
    assert to_minor_units(Decimal("1250.00")) == 125000
    assert to_minor_units(Decimal("0.1")) == 10
    assert bkash_amount(Decimal("1250")) == "1250.00"
    assert same_money(Decimal("1250.00"), "BDT", Decimal("1250"), "bdt")
    assert not same_money(Decimal("1250.00"), "BDT", Decimal("1.00"), "BDT")
    assert not same_money(Decimal("1250.00"), "BDT", Decimal("1250.00"), "USD")


def test_success_for_a_cancelled_or_already_paid_order_is_refunded() -> None:
    assert decide_on_success("pending_payment", other_succeeded_payment=False).emit_succeeded
    assert "cancelled" in (decide_on_success("cancelled", False).refund_reason or "")
    assert "already paid" in (decide_on_success("pending_payment", True).refund_reason or "")
    assert not decide_on_success("paid", False).emit_succeeded


def test_bkash_answers_in_both_error_shapes() -> None:
    assert bkash_error({"statusCode": "0000", "statusMessage": "Successful"}) == (None, None)
    assert bkash_error({"errorCode": "2023", "errorMessage": "Insufficient Balance"}) == (
        "2023",
        "Insufficient Balance",
    )
    assert (
        classify_execute({"statusCode": "0000", "transactionStatus": "Completed", "trxID": "X"})
        is BkashOutcome.COMPLETED
    )
    assert classify_execute({"errorCode": "2023", "errorMessage": "Insufficient Balance"}) is BkashOutcome.FAILED
    assert classify_execute({"statusCode": "2056", "statusMessage": "Invalid Payment State"}) is BkashOutcome.UNCLEAR
    assert classify_execute({"statusCode": "2117", "statusMessage": "already called"}) is BkashOutcome.UNCLEAR
    assert classify_query({"statusCode": "0000", "transactionStatus": "Initiated"}) is BkashOutcome.PENDING
    assert classify_query({"statusCode": "0000", "transactionStatus": "Expired"}) is BkashOutcome.CANCELLED
    assert classify_query({"statusCode": "503", "statusMessage": "maintenance"}) is BkashOutcome.UNCLEAR


def test_redaction_masks_secret_fields_and_known_values() -> None:
    cleaned = redact(
        {
            "headers": {"Authorization": "tok", "password": "p"},
            "body": {"id_token": "t", "note": "key sk_test_abcdef!"},
        },
        ("sk_test_abcdef",),
    )
    assert cleaned == {
        "headers": {"Authorization": "[REDACTED]", "password": "[REDACTED]"},
        "body": {"id_token": "[REDACTED]", "note": "key [REDACTED]!"},
    }


def test_production_refuses_default_provider_secrets() -> None:
    base = {
        "environment": "production",
        "database_url": "postgresql://db/shop",
        "amqp_url": "amqp://mq/",
        "jwt_public_key": "pem",
        "db_role_password": "x",
        "internal_token": "a-long-random-service-to-service-secret-0123",
    }
    with pytest.raises(ValueError, match="STRIPE_SECRET_KEY"):
        PaymentsSettings(**base)
    real = {
        "STRIPE_SECRET_KEY": "sk_live_real",
        "STRIPE_WEBHOOK_SECRET": "whsec_real",
        "BKASH_APP_KEY": "app",
        "BKASH_APP_SECRET": "secret",
        "BKASH_USERNAME": "merchant",
        "BKASH_PASSWORD": "pass",
    }
    settings = PaymentsSettings(**base, **real)
    assert settings.stripe_base is None  # real keys go to the real Stripe API
    # Real merchant credentials go to bKash's production host (the sandbox host was a bug).
    assert settings.bkash_base == "https://tokenized.pay.bka.sh/v1.2.0-beta"


def test_defaults_point_at_the_sandboxes() -> None:
    settings = PaymentsSettings(sandbox_stripe_url="http://127.0.0.1:8010", sandbox_bkash_url="http://127.0.0.1:8011")
    assert settings.stripe_base == "http://127.0.0.1:8010"
    assert settings.bkash_base == "http://127.0.0.1:8011"
