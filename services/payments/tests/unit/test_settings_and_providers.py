"""Where payments talks to, which sandboxes may run, what production refuses, how Stripe's objects read,
and the refund arithmetic."""

from __future__ import annotations

import json
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import stripe

from payments.audit import ProviderLog
from payments.domain import (
    PaymentStatus,
    RefundRefused,
    RefundStatus,
    decide_on_late_success,
    default_restock,
    refund_amount,
    totals_of,
)
from payments.providers.base import Outcome, WebhookRejected
from payments.providers.stripe import StripeProvider
from payments.settings import (
    SANDBOX_BKASH_APP_KEY,
    SANDBOX_STRIPE_WEBHOOK_SECRET,
    PaymentsSettings,
    SandboxPlan,
    decide_sandboxes,
    sandbox_plan,
)
from shopkit.db import Database

pytestmark = pytest.mark.unit

PRODUCTION = {
    "environment": "production",
    "database_url": "postgresql://db/shop",
    "amqp_url": "amqp://mq/",
    "jwt_public_key": "pem",
    "db_role_password": "x",
    "internal_token": "a-long-random-service-to-service-secret-0123",
}
REAL_KEYS = {
    "STRIPE_SECRET_KEY": "sk_live_real",
    "STRIPE_WEBHOOK_SECRET": "whsec_real",
    "BKASH_APP_KEY": "merchant-app-key",
    "BKASH_APP_SECRET": "merchant-app-secret",
    "BKASH_USERNAME": "merchant",
    "BKASH_PASSWORD": "merchant-password",
}


def test_sandboxes_run_only_without_keys_and_never_in_production() -> None:
    assert decide_sandboxes("development", {}) == SandboxPlan(stripe=True, bkash=True)
    # The public sandbox values are what "unset" means.
    assert decide_sandboxes("test", {"BKASH_APP_KEY": SANDBOX_BKASH_APP_KEY}) == SandboxPlan(True, True)
    assert decide_sandboxes("development", {"STRIPE_SECRET_KEY": "sk_test_mine"}) == SandboxPlan(False, True)
    assert decide_sandboxes("development", {"BKASH_USERNAME": "merchant"}) == SandboxPlan(True, False)
    assert decide_sandboxes("production", {}) == SandboxPlan(False, False)


def test_the_plan_reads_the_environment_a_supervisor_gives_its_children(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("STRIPE_SECRET_KEY", "BKASH_APP_KEY", "SHOP_ENVIRONMENT"):
        monkeypatch.delenv(name, raising=False)
    assert sandbox_plan() == SandboxPlan(True, True)
    assert sandbox_plan({"STRIPE_SECRET_KEY": "sk_live_x"}) == SandboxPlan(False, True)
    assert sandbox_plan({"BKASH_APP_KEY": "merchant"}) == SandboxPlan(True, False)
    assert sandbox_plan({"SHOP_ENVIRONMENT": "production"}) == SandboxPlan(False, False)
    monkeypatch.setenv("STRIPE_SECRET_KEY", "sk_live_from_env")
    assert sandbox_plan() == SandboxPlan(False, True)
    # The same rule as the service's own settings.
    assert PaymentsSettings(STRIPE_SECRET_KEY="sk_live_x").sandboxes == SandboxPlan(False, True)


@pytest.mark.parametrize(
    ("override", "problem"),
    [
        ({"STRIPE_SECRET_KEY": "sk_test_looks_real"}, "test key"),
        ({"STRIPE_API_BASE": "http://127.0.0.1:8010"}, "STRIPE_API_BASE"),
        ({"BKASH_BASE_URL": "https://tokenized.sandbox.bka.sh/v1.2.0-beta"}, "BKASH_BASE_URL"),
        ({"BKASH_BASE_URL": "http://127.0.0.1:8000/sandbox/bkash"}, "BKASH_BASE_URL"),
        ({"BKASH_APP_SECRET": "2is7hdktrekvrbljjh44ll3d9l1dtjo4pasmjvs5vl5qr3fug4b"}, "BKASH_APP_SECRET"),
        ({"STRIPE_WEBHOOK_SECRET": SANDBOX_STRIPE_WEBHOOK_SECRET}, "STRIPE_WEBHOOK_SECRET"),
    ],
)
def test_production_refuses_test_keys_sandboxes_and_public_credentials(override: dict[str, str], problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        PaymentsSettings(**PRODUCTION, **{**REAL_KEYS, **override})


def test_production_with_real_keys_talks_to_the_real_providers() -> None:
    settings = PaymentsSettings(**PRODUCTION, **REAL_KEYS)
    assert settings.stripe_base is None
    assert settings.bkash_base == "https://tokenized.pay.bka.sh/v1.2.0-beta"
    assert settings.stripe_webhook_signing_secret == "whsec_real"
    assert settings.sandboxes == SandboxPlan(False, False)


def test_sandbox_deliveries_verify_with_the_sandboxes_secret_and_real_ones_only_with_the_endpoints() -> None:
    sandbox = PaymentsSettings(STRIPE_WEBHOOK_SECRET="whsec_real_endpoint", sandbox_stripe_webhook_secret="whsec_sb")
    assert sandbox.stripe_webhook_signing_secret == "whsec_sb"
    real = PaymentsSettings(STRIPE_SECRET_KEY="sk_live_x", STRIPE_WEBHOOK_SECRET="whsec_real_endpoint")
    assert real.stripe_webhook_signing_secret == "whsec_real_endpoint"
    # Real keys with the public development secret: nothing verifies.
    assert PaymentsSettings(STRIPE_SECRET_KEY="sk_live_x").stripe_webhook_signing_secret is None
    # Real bKash merchant keys without BKASH_BASE_URL: bKash's production host, never its sandbox.
    assert PaymentsSettings(BKASH_APP_KEY="merchant").bkash_base == "https://tokenized.pay.bka.sh/v1.2.0-beta"


@pytest.fixture
def stripe_provider(tmp_path: Path) -> Any:
    settings = PaymentsSettings(var_dir=tmp_path, sandbox_stripe_webhook_secret="whsec_unit")
    provider = StripeProvider(settings, ProviderLog(Database(f"sqlite:///{tmp_path}/x.db", service="p"), tuple))
    yield provider
    provider.close()


def test_webhooks_verify_on_the_raw_bytes(stripe_provider: StripeProvider) -> None:
    body = json.dumps({"id": "evt_1", "type": "checkout.session.completed", "data": {"object": {}}})
    timestamp = int(time.time())
    good = stripe.WebhookSignature._compute_signature(f"{timestamp}.{body}", "whsec_unit")

    assert stripe_provider.verify_webhook(body.encode(), f"t={timestamp},v1={good}")["id"] == "evt_1"
    for signature in (None, f"t={timestamp},v1={'0' * 64}", f"t={timestamp - 3600},v1={good}"):
        with pytest.raises(WebhookRejected):
            stripe_provider.verify_webhook(body.encode(), signature)
    with pytest.raises(WebhookRejected):  # one byte more than what was signed
        stripe_provider.verify_webhook(body.encode() + b" ", f"t={timestamp},v1={good}")
    with pytest.raises(WebhookRejected):  # not UTF-8 at all
        stripe_provider.verify_webhook(b"\xff\xfe", f"t={timestamp},v1={good}")


def test_stripe_events_read_as_verdicts(stripe_provider: StripeProvider) -> None:
    session = {"id": "cs_1", "amount_total": 125000, "currency": "bdt", "payment_intent": "pi_1"}

    def verdict(event_type: str, **fields: Any) -> Any:
        return stripe_provider.verdict_of_event({"type": event_type, "data": {"object": {**session, **fields}}})

    paid = verdict("checkout.session.completed", payment_status="paid")
    assert (paid.outcome, paid.reference, paid.transaction_id) == (Outcome.PAID, "cs_1", "pi_1")
    assert (paid.amount, paid.currency) == (Decimal("1250.00"), "BDT")
    assert verdict("checkout.session.completed", payment_status="unpaid").outcome is Outcome.PENDING
    assert verdict("checkout.session.async_payment_failed").outcome is Outcome.FAILED
    assert verdict("checkout.session.expired").outcome is Outcome.CANCELLED
    refunded = stripe_provider.verdict_of_event(
        {"type": "charge.refunded", "data": {"object": {"payment_intent": "pi_1", "amount_refunded": 40000}}}
    )
    assert refunded is not None and (refunded.outcome, refunded.refunded_total) == (Outcome.REFUNDED, Decimal("400"))
    assert verdict("customer.created") is None


def test_refund_arithmetic() -> None:
    totals = totals_of(
        Decimal("1250.00"),
        [(RefundStatus.SUCCEEDED, Decimal("400")), (RefundStatus.PENDING, Decimal("100")), ("failed", Decimal("9"))],
    )
    assert (totals.rest, totals.count, totals.status()) == (Decimal("750.00"), 2, PaymentStatus.PARTIALLY_REFUNDED)
    assert refund_amount(totals, None, max_refunds=None) == Decimal("750.00")
    assert refund_amount(totals, Decimal("750"), max_refunds=None) == Decimal("750.00")
    with pytest.raises(RefundRefused, match=r"750\.00"):
        refund_amount(totals, Decimal("750.01"), max_refunds=None)
    with pytest.raises(RefundRefused) as refused:
        refund_amount(totals, Decimal("1"), max_refunds=2)
    assert refused.value.conflict
    everything = totals_of(Decimal("10"), [(RefundStatus.PENDING, Decimal("10"))])
    assert everything.status() == PaymentStatus.REFUND_PENDING
    assert refund_amount(everything, None, max_refunds=None) is None
    assert totals_of(Decimal("10"), [(RefundStatus.SUCCEEDED, Decimal("10"))]).status() == PaymentStatus.REFUNDED


def test_restock_follows_fulfilment_and_late_successes_are_never_kept() -> None:
    assert default_restock(None) and not default_restock("shipped") and not default_restock("delivered")
    assert not decide_on_late_success("cancelled").emit_succeeded
