"""With SHOP_SANDBOX_STATE_DIR, a sandbox killed with SIGKILL restarts knowing everything it answered."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import stripe

from sandbox.bkash_sandbox import BkashSandboxSettings
from sandbox.bkash_sandbox import create_app as create_bkash_app
from sandbox.stripe_sandbox import create_app as create_stripe_app
from sandbox.testing import SandboxProcess
from sandbox.tests.conftest import WEBHOOK_SECRET, BkashSandbox, WebhookReceiver, stripe_client, stripe_settings
from sandbox.tests.test_bkash_sandbox import callback_query
from sandbox.tests.test_stripe_sandbox import session_params
from shopkit.testing import local_http

KEY = {"Authorization": "Bearer sk_test_sandbox"}


def stripe_env(state_dir: Path, webhook_url: str, **extra: str) -> dict[str, str]:
    return {
        "SHOP_SANDBOX_STATE_DIR": str(state_dir),
        "SHOP_SANDBOX_STRIPE_WEBHOOK_URL": webhook_url,
        "SHOP_SANDBOX_STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "SHOP_SANDBOX_STRIPE_WEBHOOK_RETRY_DELAYS": "[0.2]",
        "SHOP_SANDBOX_STRIPE_WEBHOOK_RESUME_DELAY": "0",
        **extra,
    }


@pytest.fixture
def stripe_process(tmp_path: Path, webhook_receiver: WebhookReceiver) -> Iterator[SandboxProcess]:
    process = SandboxProcess("sandbox.stripe_sandbox", stripe_env(tmp_path, webhook_receiver.url))
    yield process.start()
    process.stop()


def pay(client: stripe.StripeClient, url: str | None) -> None:
    assert local_http.post(f"{url}/pay", data={"outcome": "success"}, timeout=10).status_code == 200


def test_a_killed_stripe_sandbox_restarts_with_every_object(
    stripe_process: SandboxProcess, webhook_receiver: WebhookReceiver
) -> None:
    client = stripe_client(stripe_process.url)
    sessions = client.v1.checkout.sessions
    order_params = session_params()
    open_session = sessions.create(params=order_params, options={"idempotency_key": "order-1"})
    paid = sessions.create(params=session_params())
    pay(client, paid.url)
    intent = str(sessions.retrieve(paid.id).payment_intent)
    first_refund = client.v1.refunds.create(params={"payment_intent": intent, "amount": 1000})
    webhook_receiver.wait_for("charge.refunded")
    events_before = [e.id for e in client.v1.events.list(params={"limit": 100}).data]

    stripe_process.kill()
    stripe_process.start()

    assert sessions.retrieve(open_session.id).status == "open"
    after = sessions.retrieve(paid.id, params={"expand": ["payment_intent.latest_charge"]})
    assert (after.status, after.payment_status) == ("complete", "paid")
    assert isinstance(after.payment_intent, stripe.PaymentIntent)
    assert isinstance(after.payment_intent.latest_charge, stripe.Charge)
    assert after.payment_intent.latest_charge.amount_refunded == 1000
    assert [r.id for r in client.v1.refunds.list(params={"payment_intent": intent}).data] == [first_refund.id]
    assert [e.id for e in client.v1.events.list(params={"limit": 100}).data] == events_before
    # A retried request with the same key is answered from before the crash, not made twice.
    replayed = sessions.create(params=order_params, options={"idempotency_key": "order-1"})
    assert replayed.id == open_session.id
    assert replayed.last_response is not None
    assert replayed.last_response.headers["idempotent-replayed"] == "true"
    # And the account goes on: the open session can be paid, the rest refunded.
    pay(client, open_session.url)
    rest = client.v1.refunds.create(params={"payment_intent": intent})
    assert rest.amount == after.amount_total - 1000
    assert webhook_receiver.wait_for("checkout.session.completed", count=2)


def test_a_pending_delivery_resumes_after_the_restart(tmp_path: Path, webhook_receiver: WebhookReceiver) -> None:
    webhook_receiver.fail_next = 1
    env = stripe_env(tmp_path, webhook_receiver.url, SHOP_SANDBOX_STRIPE_WEBHOOK_RETRY_DELAYS="[3]")
    with SandboxProcess("sandbox.stripe_sandbox", env) as process:
        client = stripe_client(process.url)
        session = client.v1.checkout.sessions.create(params=session_params())
        pay(client, session.url)
        event_id = client.v1.events.list().data[0].id
        deadline = time.monotonic() + 10
        while not local_http.get(f"{process.url}/_control/events/{event_id}").json()["attempts"]:
            assert time.monotonic() < deadline
            time.sleep(0.05)

        process.kill()  # the retry is due in 3 s: it must survive the crash
        process.start()
        (event,) = webhook_receiver.wait_for("checkout.session.completed", timeout=15)
        # The sandbox records the delivery once it has read the receiver's answer, a moment after the
        # receiver saw the event.
        deadline = time.monotonic() + 10
        while (record := local_http.get(f"{process.url}/_control/events/{event_id}").json())[
            "delivery_status"
        ] == "pending" and time.monotonic() < deadline:
            time.sleep(0.05)

    assert event.id == event_id
    assert record["delivery_status"] == "delivered"
    assert [a["status_code"] for a in record["attempts"]] == [500, 200]


def test_killed_at_any_instant_keeps_every_acknowledged_change(stripe_process: SandboxProcess) -> None:
    acknowledged: list[tuple[str, str]] = []  # (session id, payment intent or "")
    refunded: dict[str, int] = {}
    stop = threading.Event()

    def shop() -> None:
        with httpx.Client(base_url=stripe_process.url, headers=KEY, timeout=5) as http:
            while not stop.is_set():
                try:
                    session = http.post("/v1/checkout/sessions", data=_form(session_params())).json()
                    acknowledged.append((session["id"], ""))
                    http.post(f"{session['url']}/pay", data={"outcome": "success"}).raise_for_status()
                    intent = http.get(f"/v1/checkout/sessions/{session['id']}").json()["payment_intent"]
                    acknowledged[-1] = (session["id"], intent)
                    http.post("/v1/refunds", data={"payment_intent": intent, "amount": "7"}).raise_for_status()
                    refunded[intent] = 7
                except httpx.HTTPError:
                    return  # the sandbox died mid-request: that answer never came

    worker = threading.Thread(target=shop)
    worker.start()
    time.sleep(random.uniform(1.0, 2.0))
    stripe_process.kill()
    stop.set()
    worker.join()
    stripe_process.start()

    client = stripe_client(stripe_process.url)
    assert len(acknowledged) >= 2
    for session_id, intent in acknowledged:
        session = client.v1.checkout.sessions.retrieve(session_id)
        if intent:
            assert session.payment_intent == intent
            charge = client.v1.payment_intents.retrieve(intent, params={"expand": ["latest_charge"]}).latest_charge
            assert isinstance(charge, stripe.Charge)
            refunds = client.v1.refunds.list(params={"payment_intent": intent}).data
            # A refund is all there (charge, refund and events) or not at all.
            assert charge.amount_refunded == sum(r.amount for r in refunds)
            assert charge.amount_refunded >= refunded.get(intent, 0)
    for event in client.v1.events.list(params={"limit": 100}).auto_paging_iter():
        obj = event.data.object
        if event.type == "charge.refunded":
            assert client.v1.refunds.list(params={"charge": obj.id}).data
        elif event.type == "checkout.session.completed":
            assert client.v1.checkout.sessions.retrieve(obj.id).status == "complete"


def _form(params: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """Stripe's bracket encoding of nested parameters, as the library sends them."""
    flat: dict[str, str] = {}
    for name, value in params.items():
        key = f"{prefix}[{name}]" if prefix else name
        if isinstance(value, dict):
            flat.update(_form(value, key))
        elif isinstance(value, list):
            flat.update(_form({str(i): item for i, item in enumerate(value)}, key))
        else:
            flat[key] = str(value)
    return flat


def test_a_killed_bkash_sandbox_restarts_with_tokens_payments_and_refunds(tmp_path: Path) -> None:
    settings = BkashSandboxSettings()
    with SandboxProcess("sandbox.bkash_sandbox", {"SHOP_SANDBOX_STATE_DIR": str(tmp_path)}) as process:
        http = httpx.Client(timeout=10)
        bkash = BkashSandbox(base_url=process.url, settings=settings, http=http)
        bkash.grant()
        paid = bkash.create(invoice="INV-paid")
        assert callback_query(bkash.customer_pays(paid["bkashURL"]))["status"] == "success"
        executed = bkash.call("/execute", {"paymentID": paid["paymentID"]})
        ids = {"paymentID": paid["paymentID"], "trxID": executed["trxID"]}
        first = bkash.call("/payment/refund", {**ids, "amount": "40", "sku": "s", "reason": "r"})
        authorized = bkash.create(invoice="INV-authorized")
        assert callback_query(bkash.customer_pays(authorized["bkashURL"]))["status"] == "success"
        waiting = bkash.create(invoice="INV-waiting")

        process.kill()
        process.start()

        # The same token still works; every payment is where it was.
        queried = bkash.call("/payment/status", {"paymentID": paid["paymentID"]})
        assert (queried["transactionStatus"], queried["trxID"]) == ("Completed", executed["trxID"])
        assert bkash.call("/payment/refund", ids)["refundTrxID"] == first["refundTrxID"]
        assert bkash.call("/payment/refund", {**ids, "amount": "60.01", "sku": "s", "reason": "r"})["statusCode"] == (
            "2026"
        )
        assert bkash.call("/payment/refund", {**ids, "amount": "60", "sku": "s", "reason": "r"})["statusCode"] == "0000"
        assert bkash.call("/execute", {"paymentID": paid["paymentID"]})["statusCode"] == "2117"
        assert bkash.call("/execute", {"paymentID": authorized["paymentID"]})["transactionStatus"] == "Completed"
        assert callback_query(bkash.customer_pays(waiting["bkashURL"]))["status"] == "success"
        assert bkash.create(invoice="INV-paid")["statusCode"] == "2029"  # paid invoices are remembered too
        http.close()


def test_without_a_state_directory_nothing_is_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SHOP_SANDBOX_STATE_DIR", raising=False)

    stripe_app = create_stripe_app(stripe_settings("http://127.0.0.1:9/none"))
    bkash_app = create_bkash_app()

    assert stripe_app.state.account.journal is None
    assert bkash_app.state.account.journal is None
    assert list(tmp_path.iterdir()) == []
