"""The bKash sandbox, driven over real HTTP the way an independent bKash client would."""

from __future__ import annotations

import threading
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from fastapi import FastAPI

from sandbox.bkash_sandbox import BkashSandboxSettings, create_app
from sandbox.testing import serve_in_thread
from sandbox.tests.conftest import BkashSandbox

CALLBACK = "http://shop.test/api/payments/bkash/callback"


def callback_query(response: httpx.Response) -> dict[str, str]:
    """The merchant callback a 303 points at, as {name: value}; asserts it is the callback."""
    assert response.status_code == 303, response.text
    location = response.headers["location"]
    assert location.startswith(f"{CALLBACK}?"), location
    return {name: values[0] for name, values in parse_qs(urlsplit(location).query).items()}


def authorized_payment(bkash: BkashSandbox, wallet: str = "01770618575", **create: Any) -> dict[str, Any]:
    created = bkash.create(**create)
    assert callback_query(bkash.customer_pays(created["bkashURL"], wallet=wallet))["status"] == "success"
    return created


def completed_payment(bkash: BkashSandbox, **create: Any) -> dict[str, Any]:
    created = authorized_payment(bkash, **create)
    executed = bkash.call("/execute", {"paymentID": created["paymentID"]})
    assert executed["statusCode"] == "0000"
    return executed


# Tokens


def test_grant_answers_a_bearer_token_valid_for_an_hour(bkash_sandbox: BkashSandbox) -> None:
    granted = bkash_sandbox.grant()

    assert granted["statusCode"] == "0000"
    assert granted["token_type"] == "Bearer"
    assert granted["expires_in"] == 3600
    assert granted["id_token"] and granted["refresh_token"]
    assert bkash_sandbox.control("/stats").json()["grant"] == 2  # the fixture's and this one


def test_grant_refuses_wrong_credentials(bkash_sandbox: BkashSandbox) -> None:
    settings = bkash_sandbox.settings
    user_headers = {"username": settings.username, "password": "wrong"}
    good_body = {"app_key": settings.app_key, "app_secret": settings.app_secret}

    wrong_password = bkash_sandbox.post_json("/tokenized/checkout/token/grant", good_body, user_headers)
    assert wrong_password.status_code == 401
    assert wrong_password.json() == {"message": "Unauthorized"}

    user_headers["password"] = settings.password
    wrong_secret = bkash_sandbox.post_json(
        "/tokenized/checkout/token/grant", {**good_body, "app_secret": "nope"}, user_headers
    )
    assert wrong_secret.status_code == 200
    assert wrong_secret.json() == {"statusCode": "2001", "statusMessage": "Invalid App Key"}


def test_expired_token_is_401_and_refresh_gives_a_working_one(bkash_sandbox: BkashSandbox) -> None:
    refresh_token = bkash_sandbox.grant()["refresh_token"]
    bkash_sandbox.http.post(f"{bkash_sandbox.base_url}/_control/expire-tokens").raise_for_status()
    headers = {"Authorization": bkash_sandbox.id_token, "X-APP-Key": bkash_sandbox.settings.app_key}

    expired = bkash_sandbox.post_json("/tokenized/checkout/payment/status", {"paymentID": "x"}, headers)
    assert expired.status_code == 401
    assert expired.json() == {"message": "Unauthorized"}

    settings = bkash_sandbox.settings
    refreshed = bkash_sandbox.post_json(
        "/tokenized/checkout/token/refresh",
        {"app_key": settings.app_key, "app_secret": settings.app_secret, "refresh_token": refresh_token},
        {"username": settings.username, "password": settings.password},
    ).json()
    assert refreshed["statusCode"] == "0000"
    assert refreshed["id_token"] != bkash_sandbox.id_token
    bkash_sandbox.id_token = refreshed["id_token"]
    assert bkash_sandbox.create()["statusCode"] == "0000"


@pytest.mark.parametrize(
    "authorization", [None, "not-a-token", "Bearer {token}"], ids=["missing", "unknown", "bearer-prefixed"]
)
def test_calls_without_a_valid_id_token_are_401(bkash_sandbox: BkashSandbox, authorization: str | None) -> None:
    headers = {"X-APP-Key": bkash_sandbox.settings.app_key}
    if authorization is not None:
        headers["Authorization"] = authorization.format(token=bkash_sandbox.id_token)

    response = bkash_sandbox.post_json("/tokenized/checkout/create", {}, headers)

    assert response.status_code == 401
    assert response.json() == {"message": "Unauthorized"}
    assert bkash_sandbox.control("/stats").json()["create"] == 0


def test_wrong_app_key_header_is_2001(bkash_sandbox: BkashSandbox) -> None:
    headers = {"Authorization": bkash_sandbox.id_token, "X-APP-Key": "other"}
    response = bkash_sandbox.post_json("/tokenized/checkout/payment/status", {"paymentID": "x"}, headers)
    assert response.json()["statusCode"] == "2001"


# Create


def test_create_answers_an_initiated_payment_with_its_urls(bkash_sandbox: BkashSandbox) -> None:
    created = bkash_sandbox.create(amount="1250.50", invoice="INV-42")

    assert created["statusCode"] == "0000"
    assert created["statusMessage"] == "Successful"
    assert created["transactionStatus"] == "Initiated"
    assert created["amount"] == "1250.50"
    assert created["currency"] == "BDT"
    assert created["intent"] == "sale"
    assert created["merchantInvoiceNumber"] == "INV-42"
    assert created["callbackURL"] == CALLBACK
    assert created["bkashURL"] == f"{bkash_sandbox.base_url}/checkout/{created['paymentID']}"
    success = parse_qs(urlsplit(created["successCallbackURL"]).query)
    assert success["paymentID"] == [created["paymentID"]]
    assert success["status"] == ["success"]
    assert parse_qs(urlsplit(created["cancelledCallbackURL"]).query)["status"] == ["cancel"]
    assert created["paymentCreateTime"].endswith("GMT+0600")


def test_create_accepts_a_json_number_amount(bkash_sandbox: BkashSandbox) -> None:
    assert bkash_sandbox.create(amount=10.5)["amount"] == "10.5"


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"currency": "USD"}, "2007"),
        ({"amount": "0"}, "2006"),
        ({"amount": "-5"}, "2006"),
        ({"amount": "ten"}, "2006"),
        ({"amount": "10.555"}, "2006"),
        ({"callbackURL": "ftp://shop.test/cb"}, "2049"),
        ({"callbackURL": "shop.test/cb"}, "2049"),
        ({"merchantInvoiceNumber": None}, "2065"),
        ({"callbackURL": None}, "2065"),
        ({"mode": "0001"}, "2063"),
        ({"intent": "authorization"}, "2008"),
    ],
)
def test_create_refuses_invalid_requests(bkash_sandbox: BkashSandbox, change: dict[str, Any], code: str) -> None:
    body = {
        "mode": "0011",
        "payerReference": "01770618575",
        "callbackURL": CALLBACK,
        "amount": "100",
        "currency": "BDT",
        "intent": "sale",
        "merchantInvoiceNumber": "INV-1",
    }
    body.update(change)
    body = {name: value for name, value in body.items() if value is not None}

    answer = bkash_sandbox.call("/create", body)

    assert answer["statusCode"] == code
    assert "paymentID" not in answer
    assert bkash_sandbox.control("/payments").json()["data"] == []


def test_malformed_json_body_is_2025(bkash_sandbox: BkashSandbox) -> None:
    response = bkash_sandbox.http.post(
        f"{bkash_sandbox.base_url}/tokenized/checkout/create",
        content=b"{not json",
        headers={"Authorization": bkash_sandbox.id_token, "X-APP-Key": bkash_sandbox.settings.app_key},
    )
    assert response.status_code == 200
    assert response.json()["statusCode"] == "2025"


def test_a_paid_invoice_cannot_be_paid_again(bkash_sandbox: BkashSandbox) -> None:
    completed_payment(bkash_sandbox, invoice="INV-DUP")
    assert bkash_sandbox.create(invoice="INV-DUP")["statusCode"] == "2029"


# The customer's pages and Execute


def test_customer_pays_then_execute_completes_the_payment(bkash_sandbox: BkashSandbox) -> None:
    created = bkash_sandbox.create(amount="100.00")
    payment_id = created["paymentID"]
    page = bkash_sandbox.http.get(created["bkashURL"])
    assert page.status_code == 200
    assert f"action='{created['bkashURL']}/wallet'" in page.text

    wallet = bkash_sandbox.http.post(f"{created['bkashURL']}/wallet", data={"wallet": "01770618575"})
    assert wallet.status_code == 303
    assert wallet.headers["location"] == f"{created['bkashURL']}/otp"
    assert "name='otp'" in bkash_sandbox.http.get(wallet.headers["location"]).text
    otp = bkash_sandbox.http.post(wallet.headers["location"], data={"otp": "123456"})
    assert otp.status_code == 303
    assert otp.headers["location"] == f"{created['bkashURL']}/pin"
    assert "name='pin'" in bkash_sandbox.http.get(otp.headers["location"]).text
    callback = callback_query(bkash_sandbox.http.post(otp.headers["location"], data={"pin": "12121"}))
    assert callback["paymentID"] == payment_id
    assert callback["status"] == "success"
    assert callback["apiVersion"] == "1.2.0-beta"
    assert callback["signature"]

    # The callback alone moves no money: only Execute does.
    assert bkash_sandbox.call("/payment/status", {"paymentID": payment_id})["transactionStatus"] == "Initiated"
    executed = bkash_sandbox.call("/execute", {"paymentID": payment_id})
    assert executed["statusCode"] == "0000"
    assert executed["transactionStatus"] == "Completed"
    assert executed["amount"] == "100.00"
    assert executed["currency"] == "BDT"
    assert executed["customerMsisdn"] == "01770618575"
    assert executed["merchantInvoiceNumber"] == "INV-1"
    assert executed["trxID"]

    queried = bkash_sandbox.call("/payment/status", {"paymentID": payment_id})
    assert queried["transactionStatus"] == "Completed"
    assert queried["trxID"] == executed["trxID"]
    assert queried["merchantInvoice"] == "INV-1"
    assert queried["verificationStatus"] == "Complete"
    found = bkash_sandbox.call("/general/searchTransaction", {"trxID": executed["trxID"]})
    assert found["statusCode"] == "0000"
    assert found["transactionStatus"] == "Completed"
    assert found["amount"] == "100.00"
    assert found["customerMsisdn"] == "01770618575"


def test_repeated_execute_never_takes_money_twice(bkash_sandbox: BkashSandbox) -> None:
    executed = completed_payment(bkash_sandbox)

    again = bkash_sandbox.call("/execute", {"paymentID": executed["paymentID"]})

    assert again["statusCode"] in ("2117", "2062")
    assert "trxID" not in again
    state = bkash_sandbox.control(f"/payments/{executed['paymentID']}").json()
    assert state["executeSuccesses"] == 1
    assert state["executeCalls"] == 2
    assert state["trxID"] == executed["trxID"]


def test_concurrent_executes_complete_the_payment_once(bkash_sandbox: BkashSandbox) -> None:
    payment_id = authorized_payment(bkash_sandbox)["paymentID"]
    answers: list[dict[str, Any]] = []
    lock = threading.Lock()

    def execute() -> None:
        answer = bkash_sandbox.call("/execute", {"paymentID": payment_id})
        with lock:
            answers.append(answer)

    threads = [threading.Thread(target=execute) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(a["statusCode"] for a in answers) == ["0000"] + ["2117"] * 5
    assert bkash_sandbox.control(f"/payments/{payment_id}").json()["executeSuccesses"] == 1


def test_execute_before_the_customer_finished_is_2056(bkash_sandbox: BkashSandbox) -> None:
    created = bkash_sandbox.create()
    assert bkash_sandbox.call("/execute", {"paymentID": created["paymentID"]})["statusCode"] == "2056"

    bkash_sandbox.http.post(f"{created['bkashURL']}/wallet", data={"wallet": "01770618575"})
    assert bkash_sandbox.call("/execute", {"paymentID": created["paymentID"]})["statusCode"] == "2056"
    assert bkash_sandbox.call("/payment/status", {"paymentID": created["paymentID"]})["transactionStatus"] == (
        "Initiated"
    )


def test_unknown_payment_id_is_2002(bkash_sandbox: BkashSandbox) -> None:
    assert bkash_sandbox.call("/execute", {"paymentID": "TR0011NOPE"})["statusCode"] == "2002"
    assert bkash_sandbox.call("/payment/status", {"paymentID": "TR0011NOPE"})["statusCode"] == "2002"
    assert bkash_sandbox.call("/execute", {})["statusCode"] == "2065"


@pytest.mark.parametrize(("otp", "pin"), [("000000", "12121"), ("123456", "99999")], ids=["wrong-otp", "wrong-pin"])
def test_wrong_otp_or_pin_fails_the_payment_at_once(bkash_sandbox: BkashSandbox, otp: str, pin: str) -> None:
    created = bkash_sandbox.create()

    callback = callback_query(bkash_sandbox.customer_pays(created["bkashURL"], otp=otp, pin=pin))

    assert callback == {**callback, "paymentID": created["paymentID"], "status": "failure"}
    queried = bkash_sandbox.call("/payment/status", {"paymentID": created["paymentID"]})
    assert queried["transactionStatus"] == "Failed"
    assert "trxID" not in queried
    assert bkash_sandbox.call("/execute", {"paymentID": created["paymentID"]})["statusCode"] == "2056"
    # The attempt is over: the pages no longer take input.
    assert bkash_sandbox.http.get(created["bkashURL"]).status_code == 409
    assert bkash_sandbox.http.post(f"{created['bkashURL']}/pin", data={"pin": "12121"}).status_code == 409


def test_cancel_sends_the_customer_back_and_cancels_the_payment(bkash_sandbox: BkashSandbox) -> None:
    created = bkash_sandbox.create()

    callback = callback_query(bkash_sandbox.http.get(f"{created['bkashURL']}/cancel"))

    assert callback["status"] == "cancel"
    assert callback["paymentID"] == created["paymentID"]
    queried = bkash_sandbox.call("/payment/status", {"paymentID": created["paymentID"]})
    assert queried["transactionStatus"] == "Cancelled"
    assert bkash_sandbox.call("/execute", {"paymentID": created["paymentID"]})["statusCode"] == "2069"


def test_insufficient_balance_wallet_passes_the_pages_but_execute_is_2023(bkash_sandbox: BkashSandbox) -> None:
    created = authorized_payment(bkash_sandbox, wallet="01929918378")

    executed = bkash_sandbox.call("/execute", {"paymentID": created["paymentID"]})

    assert executed["statusCode"] == "2023"
    assert executed["statusMessage"] == "Insufficient Balance"
    assert bkash_sandbox.call("/payment/status", {"paymentID": created["paymentID"]})["transactionStatus"] == ("Failed")
    assert bkash_sandbox.call("/execute", {"paymentID": created["paymentID"]})["statusCode"] == "2023"
    assert bkash_sandbox.control(f"/payments/{created['paymentID']}").json()["executeSuccesses"] == 0


def test_unknown_wallet_shows_an_error_and_keeps_the_payment_open(bkash_sandbox: BkashSandbox) -> None:
    created = bkash_sandbox.create()

    page = bkash_sandbox.http.post(f"{created['bkashURL']}/wallet", data={"wallet": "01999999999"})

    assert page.status_code == 400
    assert "not a bKash sandbox wallet" in page.text
    state = bkash_sandbox.control(f"/payments/{created['paymentID']}").json()
    assert state["transactionStatus"] == "Initiated"
    assert state["customerStep"] == "wallet"
    # Posting the OTP before a wallet was accepted goes back to the wallet step.
    skipped = bkash_sandbox.http.post(f"{created['bkashURL']}/otp", data={"otp": "123456"})
    assert skipped.status_code == 303
    assert skipped.headers["location"] == created["bkashURL"]


def test_expired_payment_queries_as_expired_and_cannot_be_paid(bkash_sandbox: BkashSandbox) -> None:
    created = authorized_payment(bkash_sandbox)
    bkash_sandbox.http.post(f"{bkash_sandbox.base_url}/_control/payments/{created['paymentID']}/expire")

    queried = bkash_sandbox.call("/payment/status", {"paymentID": created["paymentID"]})
    assert queried["transactionStatus"] == "Expired"
    assert bkash_sandbox.call("/execute", {"paymentID": created["paymentID"]})["statusCode"] == "2056"
    assert bkash_sandbox.http.get(created["bkashURL"]).status_code == 409


def test_slow_execute_still_completes_and_query_tells(bkash_sandbox: BkashSandbox) -> None:
    payment_id = authorized_payment(bkash_sandbox)["paymentID"]
    bkash_sandbox.http.post(f"{bkash_sandbox.base_url}/_control/execute-delay", json={"seconds": 0.8})

    with pytest.raises(httpx.ReadTimeout):
        bkash_sandbox.call("/execute", {"paymentID": payment_id}, timeout=0.2)

    # The client gave up, but bKash did the work: Query is how the merchant finds out.
    queried = bkash_sandbox.call("/payment/status", {"paymentID": payment_id})
    assert queried["transactionStatus"] == "Completed"
    assert queried["trxID"]
    bkash_sandbox.http.post(f"{bkash_sandbox.base_url}/_control/execute-delay", json={"seconds": 0})
    assert bkash_sandbox.call("/execute", {"paymentID": payment_id})["statusCode"] == "2117"
    assert bkash_sandbox.control(f"/payments/{payment_id}").json()["executeSuccesses"] == 1


# Search and refunds


def test_search_of_an_unknown_transaction_is_2033(bkash_sandbox: BkashSandbox) -> None:
    assert bkash_sandbox.call("/general/searchTransaction", {"trxID": "NOPE000000"})["statusCode"] == "2033"


def test_refunds_up_to_the_amount_paid(bkash_sandbox: BkashSandbox) -> None:
    executed = completed_payment(bkash_sandbox, amount="100.00")
    ids = {"paymentID": executed["paymentID"], "trxID": executed["trxID"]}

    def refund(amount: str) -> dict[str, Any]:
        return bkash_sandbox.call("/payment/refund", {**ids, "amount": amount, "sku": "order", "reason": "test"})

    partial = refund("40")
    assert partial["statusCode"] == "0000"
    assert partial["transactionStatus"] == "Completed"
    assert partial["originalTrxID"] == executed["trxID"]
    assert partial["refundTrxID"]
    assert partial["amount"] == "40"
    assert partial["currency"] == "BDT"

    assert refund("60.01")["statusCode"] == "2026"
    rest = refund("60.00")
    assert rest["statusCode"] == "0000"
    assert refund("100.00")["statusCode"] == "2034"
    assert refund("0.01")["statusCode"] == "2034"

    # v1.2.0-beta's refund status: the same call with only paymentID and trxID.
    status = bkash_sandbox.call("/payment/refund", ids)
    assert status["refundTrxID"] == rest["refundTrxID"]
    state = bkash_sandbox.control(f"/payments/{executed['paymentID']}").json()
    assert state["refundedAmount"] == "100.00"
    assert [r["amount"] for r in state["refunds"]] == ["40", "60.00"]


def test_second_full_refund_is_2034(bkash_sandbox: BkashSandbox) -> None:
    executed = completed_payment(bkash_sandbox, amount="250")
    body = {"paymentID": executed["paymentID"], "trxID": executed["trxID"], "sku": "order", "reason": "test"}

    assert bkash_sandbox.call("/payment/refund", {**body, "amount": "250"})["statusCode"] == "0000"
    assert bkash_sandbox.call("/payment/refund", {**body, "amount": "250"})["statusCode"] == "2034"


def test_refund_needs_a_completed_payment_and_its_trx_id(bkash_sandbox: BkashSandbox) -> None:
    created = authorized_payment(bkash_sandbox)
    body = {"paymentID": created["paymentID"], "trxID": "WRONG00000", "amount": "1", "sku": "s", "reason": "r"}
    assert bkash_sandbox.call("/payment/refund", body)["statusCode"] == "2033"

    executed = bkash_sandbox.call("/execute", {"paymentID": created["paymentID"]})
    body["trxID"] = executed["trxID"]
    assert bkash_sandbox.call("/payment/refund", {**body, "amount": "abc"})["statusCode"] == "2006"
    assert bkash_sandbox.call("/payment/refund", {**body, "sku": ""})["statusCode"] == "2065"


# Controls and serving


def test_reset_forgets_payments_and_tokens(bkash_sandbox: BkashSandbox) -> None:
    created = bkash_sandbox.create()
    assert bkash_sandbox.control("/stats").json()["create"] == 1

    bkash_sandbox.http.post(f"{bkash_sandbox.base_url}/_control/reset")

    assert bkash_sandbox.control(f"/payments/{created['paymentID']}").status_code == 404
    assert bkash_sandbox.control("/stats").json() == {
        "grant": 0,
        "refresh": 0,
        "create": 0,
        "execute": 0,
        "execute_completed": 0,
        "query": 0,
        "search": 0,
        "refund": 0,
        "unauthorized": 0,
        "payments": 0,
    }
    stale = bkash_sandbox.http.post(
        f"{bkash_sandbox.base_url}/tokenized/checkout/payment/status",
        json={"paymentID": created["paymentID"]},
        headers={"Authorization": bkash_sandbox.id_token, "X-APP-Key": bkash_sandbox.settings.app_key},
    )
    assert stale.status_code == 401


def test_mounted_under_a_prefix_with_a_versioned_base_url() -> None:
    parent = FastAPI()
    parent.mount("/sandbox/bkash", create_app())
    with serve_in_thread(parent) as server, httpx.Client(timeout=10) as http:
        settings = BkashSandboxSettings()
        # A BKASH_BASE_URL ending in /v1.2.0-beta, as for the real sandbox.
        bkash = BkashSandbox(base_url=f"{server}/sandbox/bkash/v1.2.0-beta", settings=settings, http=http)
        assert bkash.grant()["statusCode"] == "0000"
        created = bkash.create()
        assert created["bkashURL"] == f"{server}/sandbox/bkash/checkout/{created['paymentID']}"
        assert callback_query(bkash.customer_pays(created["bkashURL"]))["status"] == "success"
        executed = bkash.call("/execute", {"paymentID": created["paymentID"]})
        state = http.get(f"{server}/sandbox/bkash/_control/payments/{created['paymentID']}").json()

    assert executed["transactionStatus"] == "Completed"
    assert state["executeSuccesses"] == 1
