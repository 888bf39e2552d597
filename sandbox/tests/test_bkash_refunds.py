"""bKash partial refunds: several up to the captured amount, at most ten, and the refund status."""

from __future__ import annotations

import threading
from typing import Any

from sandbox.tests.conftest import BkashSandbox
from sandbox.tests.test_bkash_sandbox import completed_payment


def refunder(bkash: BkashSandbox, executed: dict[str, Any]) -> Any:
    ids = {"paymentID": executed["paymentID"], "trxID": executed["trxID"]}

    def refund(amount: str) -> dict[str, Any]:
        return bkash.call("/payment/refund", {**ids, "amount": amount, "sku": "order-1", "reason": "return"})

    return refund


def test_partial_refunds_each_get_their_own_refund_trx_id(bkash_sandbox: BkashSandbox) -> None:
    executed = completed_payment(bkash_sandbox, amount="1000.00")
    refund = refunder(bkash_sandbox, executed)

    answers = [refund(amount) for amount in ("100", "250.50", "49.50")]

    assert [a["statusCode"] for a in answers] == ["0000"] * 3
    assert [a["amount"] for a in answers] == ["100", "250.50", "49.50"]
    assert len({a["refundTrxID"] for a in answers}) == 3
    assert {a["originalTrxID"] for a in answers} == {executed["trxID"]}
    state = bkash_sandbox.control(f"/payments/{executed['paymentID']}").json()
    assert state["refundedAmount"] == "400.00"
    assert [r["refundTrxID"] for r in state["refunds"]] == [a["refundTrxID"] for a in answers]
    # The payment itself stays Completed: a refund is a transaction of its own.
    assert bkash_sandbox.call("/payment/status", {"paymentID": executed["paymentID"]})["transactionStatus"] == (
        "Completed"
    )


def test_more_than_what_is_left_is_2026_and_nothing_once_all_is_back_is_2034(bkash_sandbox: BkashSandbox) -> None:
    refund = refunder(bkash_sandbox, completed_payment(bkash_sandbox, amount="100"))

    assert refund("70")["statusCode"] == "0000"
    assert refund("30.01")["statusCode"] == "2026"
    assert refund("30")["statusCode"] == "0000"
    assert refund("0.01")["statusCode"] == "2034"


def test_at_most_ten_refunds_per_payment(bkash_sandbox: BkashSandbox) -> None:
    executed = completed_payment(bkash_sandbox, amount="100")
    refund = refunder(bkash_sandbox, executed)

    codes = [refund("1")["statusCode"] for _ in range(10)]
    eleventh = refund("1")

    assert codes == ["0000"] * 10
    assert eleventh["statusCode"] == "2074"
    assert "refundTrxID" not in eleventh
    assert bkash_sandbox.control(f"/payments/{executed['paymentID']}").json()["refundedAmount"] == "10"


def test_refund_status_answers_the_latest_refund(bkash_sandbox: BkashSandbox) -> None:
    executed = completed_payment(bkash_sandbox, amount="100")
    ids = {"paymentID": executed["paymentID"], "trxID": executed["trxID"]}
    assert bkash_sandbox.call("/payment/refund", ids)["statusCode"] == "2033"  # none yet
    refund = refunder(bkash_sandbox, executed)
    refund("10")
    latest = refund("15")

    status = bkash_sandbox.call("/payment/refund", ids)

    assert status["statusCode"] == "0000"
    assert (status["refundTrxID"], status["amount"], status["transactionStatus"]) == (
        latest["refundTrxID"],
        "15",
        "Completed",
    )


def test_concurrent_refunds_never_return_more_than_was_paid(bkash_sandbox: BkashSandbox) -> None:
    refund = refunder(bkash_sandbox, completed_payment(bkash_sandbox, amount="100"))
    codes: list[str] = []
    lock = threading.Lock()

    def run() -> None:
        code = refund("30")["statusCode"]
        with lock:
            codes.append(code)

    threads = [threading.Thread(target=run) for _ in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(codes) == ["0000"] * 3 + ["2026"] * 2
