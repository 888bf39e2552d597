"""bKash's bad days: Execute answers that never come back, and maintenance windows."""

from __future__ import annotations

import time

import httpx
import pytest
from fastapi import FastAPI

from sandbox.bkash_sandbox import BkashSandboxSettings, create_app
from sandbox.testing import serve_in_thread
from sandbox.tests.conftest import BkashSandbox
from sandbox.tests.test_bkash_sandbox import authorized_payment, callback_query


def arm_timeouts(bkash: BkashSandbox, times: int, hold: float) -> None:
    assert bkash.set_control("/execute-timeout", {"times": times, "hold_seconds": hold}) == {
        "times": times,
        "hold_seconds": hold,
    }


def test_a_lost_execute_answer_still_completes_the_payment(bkash_sandbox: BkashSandbox) -> None:
    payment_id = authorized_payment(bkash_sandbox)["paymentID"]
    arm_timeouts(bkash_sandbox, times=1, hold=5.0)

    with pytest.raises(httpx.ReadTimeout):
        bkash_sandbox.call("/execute", {"paymentID": payment_id}, timeout=0.5)

    # bKash did the work: Query tells the merchant, and a second Execute takes nothing more.
    queried = bkash_sandbox.call("/payment/status", {"paymentID": payment_id})
    assert queried["transactionStatus"] == "Completed"
    assert queried["trxID"]
    again = bkash_sandbox.call("/execute", {"paymentID": payment_id})
    assert again["statusCode"] == "2117"
    state = bkash_sandbox.control(f"/payments/{payment_id}").json()
    assert (state["executeSuccesses"], state["trxID"]) == (1, queried["trxID"])


def test_only_the_next_n_executes_lose_their_answer(bkash_sandbox: BkashSandbox) -> None:
    payments = [authorized_payment(bkash_sandbox, invoice=f"INV-{n}")["paymentID"] for n in range(3)]
    arm_timeouts(bkash_sandbox, times=2, hold=5.0)

    for payment_id in payments[:2]:
        with pytest.raises(httpx.ReadTimeout):
            bkash_sandbox.call("/execute", {"paymentID": payment_id}, timeout=0.5)
    answered = bkash_sandbox.call("/execute", {"paymentID": payments[2]})

    assert answered["transactionStatus"] == "Completed"
    assert bkash_sandbox.control("/faults").json()["execute_timeouts"] == 0
    statuses = [bkash_sandbox.call("/payment/status", {"paymentID": p})["transactionStatus"] for p in payments]
    assert statuses == ["Completed"] * 3


def test_a_client_that_waits_longer_than_the_hold_sees_the_connection_close(bkash_sandbox: BkashSandbox) -> None:
    payment_id = authorized_payment(bkash_sandbox)["paymentID"]
    arm_timeouts(bkash_sandbox, times=1, hold=0.5)
    started = time.monotonic()

    with pytest.raises(httpx.RemoteProtocolError):
        bkash_sandbox.call("/execute", {"paymentID": payment_id}, timeout=10)

    assert time.monotonic() - started >= 0.5
    assert bkash_sandbox.call("/payment/status", {"paymentID": payment_id})["transactionStatus"] == "Completed"


def test_the_hold_defaults_to_longer_than_the_shops_bkash_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    # services/payments waits SHOP_BKASH_TIMEOUT = 10 s for bKash by default.
    assert BkashSandboxSettings().execute_timeout_hold > 10
    monkeypatch.setenv("SHOP_SANDBOX_BKASH_EXECUTE_TIMEOUT_HOLD", "2.5")
    assert BkashSandboxSettings().execute_timeout_hold == 2.5


def test_the_control_uses_the_configured_hold(bkash_sandbox: BkashSandbox) -> None:
    armed = bkash_sandbox.set_control("/execute-timeout", {"times": 1})
    assert armed == {"times": 1, "hold_seconds": bkash_sandbox.settings.execute_timeout_hold}
    bad = bkash_sandbox.http.post(f"{bkash_sandbox.base_url}/_control/execute-timeout", json={"times": -1})
    assert bad.status_code == 422


def test_a_lost_answer_under_a_mount_prefix(bkash_sandbox: BkashSandbox) -> None:
    parent = FastAPI()
    parent.mount("/sandbox/bkash", create_app())
    with serve_in_thread(parent) as server, httpx.Client(timeout=10) as http:
        bkash = BkashSandbox(base_url=f"{server}/sandbox/bkash", settings=BkashSandboxSettings(), http=http)
        bkash.grant()
        created = bkash.create()
        assert callback_query(bkash.customer_pays(created["bkashURL"]))["status"] == "success"
        arm_timeouts(bkash, times=1, hold=5.0)
        with pytest.raises(httpx.ReadTimeout):
            bkash.call("/execute", {"paymentID": created["paymentID"]}, timeout=0.5)
        queried = bkash.call("/payment/status", {"paymentID": created["paymentID"]})

    assert queried["transactionStatus"] == "Completed"


def test_maintenance_answers_every_api_call_503(bkash_sandbox: BkashSandbox) -> None:
    created = bkash_sandbox.create()
    headers = {"Authorization": bkash_sandbox.id_token, "X-APP-Key": bkash_sandbox.settings.app_key}
    assert bkash_sandbox.set_control("/maintenance", {"seconds": 30}) == {"seconds": 30}
    stats_before = bkash_sandbox.control("/stats").json()

    paths = [
        "/tokenized/checkout/token/grant",
        "/tokenized/checkout/create",
        "/tokenized/checkout/execute",
        "/tokenized/checkout/payment/status",
        "/v1.2.0-beta/tokenized/checkout/payment/refund",
    ]
    answers = [bkash_sandbox.post_json(path, {"paymentID": created["paymentID"]}, headers) for path in paths]

    assert [a.status_code for a in answers] == [503] * len(paths)
    assert answers[0].json() == {
        "statusCode": "503",
        "statusMessage": "System is undergoing maintenance. Please try again later",
    }
    # Nothing reached the account, and the customer's pages (served apart from the API) still work.
    assert bkash_sandbox.control("/stats").json() == stats_before
    assert bkash_sandbox.http.get(created["bkashURL"]).status_code == 200
    assert bkash_sandbox.control(f"/payments/{created['paymentID']}").status_code == 200


def test_maintenance_ends_after_its_seconds_or_at_once_with_zero(bkash_sandbox: BkashSandbox) -> None:
    bkash_sandbox.set_control("/maintenance", {"seconds": 0.5})
    refused = bkash_sandbox.post_json("/tokenized/checkout/payment/status", {"paymentID": "x"})
    assert refused.status_code == 503

    deadline = time.monotonic() + 10
    while bkash_sandbox.control("/faults").json()["maintenance_seconds_left"] > 0:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert bkash_sandbox.create()["statusCode"] == "0000"

    bkash_sandbox.set_control("/maintenance", {"seconds": 600})
    bkash_sandbox.set_control("/maintenance", {"seconds": 0})
    assert bkash_sandbox.create()["statusCode"] == "0000"


def test_reset_clears_every_fault(bkash_sandbox: BkashSandbox) -> None:
    bkash_sandbox.set_control("/maintenance", {"seconds": 600})
    bkash_sandbox.set_control("/execute-timeout", {"times": 3})
    bkash_sandbox.set_control("/execute-delay", {"seconds": 2})

    bkash_sandbox.http.post(f"{bkash_sandbox.base_url}/_control/reset")

    faults = bkash_sandbox.control("/faults").json()
    assert faults["maintenance_seconds_left"] == 0
    assert faults["execute_timeouts"] == 0
    assert faults["execute_delay"] == 0
