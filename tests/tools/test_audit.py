"""The audit's invariants on made-up shop data (the e2e tests run it against a real shop)."""

from __future__ import annotations

import io
from typing import Any

import pytest

from tools import audit
from tools.audit import Violation, check_orders, check_products

pytestmark = pytest.mark.unit


def _order(order_id: str, status: str, total: str = "100.00", refunded: str = "0.00", qty: int = 2) -> dict[str, Any]:
    return {
        "id": order_id,
        "status": status,
        "total_amount": total,
        "refunded_amount": refunded,
        "items": [{"product_id": "p1", "quantity": qty}],
    }


def _payment(
    payment_id: str, order_id: str, status: str, captured: str = "100.00", refunded: str = "0.00"
) -> dict[str, Any]:
    return {
        "id": payment_id,
        "order_id": order_id,
        "status": status,
        "amount": "100.00",
        "captured_amount": captured,
        "refunded_amount": refunded,
    }


def test_a_consistent_shop_has_no_violation() -> None:
    orders = [
        _order("o1", "confirmed"),
        _order("o2", "cancelled"),
        _order("o3", "refunded", refunded="100.00"),
        _order("o4", "confirmed", refunded="30.00"),
        _order("o5", "pending_payment"),
    ]
    payments = [
        _payment("a", "o1", "succeeded"),
        _payment("b", "o1", "cancelled", captured="0.00"),
        _payment("c", "o2", "refunded", refunded="100.00"),
        _payment("d", "o3", "refunded", refunded="100.00"),
        _payment("e", "o4", "partially_refunded", refunded="30.00"),
        _payment("f", "o5", "initiated", captured="0.00"),
    ]
    ledger = [
        {"delta": 10, "cause": "initial", "order_id": None},
        {"delta": -2, "cause": "order_commit", "order_id": "o1"},
        {"delta": -2, "cause": "order_commit", "order_id": "o2"},
        {"delta": 2, "cause": "release", "order_id": "o2"},
        {"delta": -2, "cause": "order_commit", "order_id": "o4"},
    ]
    assert check_orders(orders, payments) == []
    assert check_products([{"id": "p1", "sku": "S", "stock": 6}], {"p1": ledger}, orders) == []


def test_money_kept_or_missing_is_named() -> None:
    orders = [_order("o1", "confirmed"), _order("o2", "cancelled"), _order("o3", "confirmed")]
    payments = [
        _payment("a", "o1", "succeeded"),
        _payment("b", "o1", "refund_pending"),  # a second capture not yet given back
        _payment("c", "o2", "succeeded"),
        _payment("d", "o3", "refunded", refunded="100.00"),
        _payment("e", "o9", "succeeded"),
    ]
    kinds = {(v.kind, v.subject) for v in check_orders(orders, payments)}
    assert kinds == {
        ("money-kept", "order o1"),
        ("money-kept", "order o2"),
        ("payments-of-confirmed", "order o3"),
        ("payment-without-order", "payment e"),
    }


def test_a_broken_ledger_names_the_product() -> None:
    orders = [_order("o1", "confirmed"), _order("o2", "cancelled")]
    ledger = [
        {"delta": 10, "cause": "initial", "order_id": None},
        {"delta": -2, "cause": "order_commit", "order_id": "o1"},
        {"delta": -2, "cause": "order_commit", "order_id": "o1"},
        {"delta": -2, "cause": "order_commit", "order_id": "o2"},
    ]
    found = check_products([{"id": "p1", "sku": "SKU-1", "stock": 8}], {"p1": ledger}, orders)
    assert {v.kind for v in found} == {"ledger-sum", "committed-twice", "commit-mismatch"}
    assert all(v.subject == "product p1 (SKU-1)" for v in found)


def test_the_table_and_the_exit_status(monkeypatch: pytest.MonkeyPatch) -> None:
    out = io.StringIO()
    audit.print_table([Violation("ledger-sum", "product p1 (S)", "ledger sums to 3, stock is 4")], out)
    assert "ledger-sum" in out.getvalue() and "product p1 (S)" in out.getvalue() and "1 violation" in out.getvalue()

    monkeypatch.delenv("SHOP_AUDIT_EMAIL", raising=False)
    assert audit.main(["--url", "http://127.0.0.1:9"]) == 2
    monkeypatch.setenv("SHOP_AUDIT_EMAIL", "a@example.com")
    monkeypatch.setenv("SHOP_AUDIT_PASSWORD", "x")
    monkeypatch.setattr(audit, "audit", lambda url, email, password: [])
    assert audit.main(["--url", "http://shop"], out=io.StringIO()) == 0
    monkeypatch.setattr(audit, "audit", lambda url, email, password: [Violation("k", "s", "d")])
    assert audit.main(["--url", "http://shop"], out=io.StringIO()) == 1


def test_shipped_delivered_and_partly_refunded_orders_are_judged_by_what_they_hold() -> None:
    orders = [
        _order("o1", "shipped"),
        _order("o2", "delivered", refunded="30.00"),
        _order("o3", "delivered", refunded="40.00"),  # a partial refund that said restock (a return)
        _order("o4", "delivered", refunded="60.00"),  # the rest being refunded: refund_pending
        _order("o5", "refunded", refunded="100.00"),  # refunded after delivery, no return: kept out
        _order("o6", "refunded", refunded="100.00"),  # refunded with restock: released exactly
    ]
    payments = [
        _payment("a", "o1", "succeeded"),
        _payment("b", "o2", "partially_refunded", refunded="30.00"),
        _payment("c", "o3", "partially_refunded", refunded="40.00"),
        _payment("d", "o4", "refund_pending", refunded="60.00"),
        _payment("e", "o5", "refunded", refunded="100.00"),
        _payment("f", "o6", "refunded", refunded="100.00"),
    ]
    ledger = [{"delta": 20, "cause": "initial", "order_id": None}]
    for order_id in ("o1", "o2", "o3", "o4", "o5", "o6"):
        ledger.append({"delta": -2, "cause": "order_commit", "order_id": order_id})
    ledger += [
        {"delta": 2, "cause": "release", "order_id": "o3"},
        {"delta": 2, "cause": "release", "order_id": "o6"},
    ]
    assert check_orders(orders, payments) == []
    assert check_products([{"id": "p1", "sku": "S", "stock": 12}], {"p1": ledger}, orders) == []


def test_a_release_that_is_not_the_whole_commit_or_comes_twice_is_named() -> None:
    orders = [
        _order("o1", "refunded", refunded="100.00", qty=2),  # half released
        _order("o2", "delivered", qty=2),  # released without any refund
        _order("o3", "refunded", refunded="100.00", qty=2),  # released twice
    ]
    ledger = [
        {"delta": 20, "cause": "initial", "order_id": None},
        {"delta": -2, "cause": "order_commit", "order_id": "o1"},
        {"delta": 1, "cause": "release", "order_id": "o1"},
        {"delta": -2, "cause": "order_commit", "order_id": "o2"},
        {"delta": 2, "cause": "release", "order_id": "o2"},
        {"delta": -2, "cause": "order_commit", "order_id": "o3"},
        {"delta": 2, "cause": "release", "order_id": "o3"},
        {"delta": 2, "cause": "release", "order_id": "o3"},
    ]
    found = {
        (v.kind, v.detail.split(" of ")[0])
        for v in check_products([{"id": "p1", "sku": "S", "stock": 21}], {"p1": ledger}, orders)
    }
    assert found == {
        ("commit-mismatch", "refunded order o1"),
        ("commit-mismatch", "delivered order o2"),
        ("commit-mismatch", "refunded order o3"),
        ("released-twice", "order o3 released 2 times"),
    }


def test_a_refund_pending_payment_beside_a_succeeded_one_still_keeps_money() -> None:
    orders = [_order("o1", "delivered"), _order("o2", "delivered")]
    payments = [
        _payment("a", "o1", "succeeded"),
        _payment("b", "o1", "refund_pending"),
        _payment("c", "o2", "refund_pending"),
        _payment("d", "o2", "refund_pending"),
    ]
    kinds = {(v.kind, v.subject) for v in check_orders(orders, payments)}
    assert kinds == {("money-kept", "order o1"), ("payments-of-confirmed", "order o2")}
