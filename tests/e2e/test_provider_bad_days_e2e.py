"""The providers' bad days, end to end through the gateway in the distributed mode, on one shop whose
payments reconcile every 2 s (grace 20 s) and whose orders time out after 45 s: webhooks dropped for
the whole run, a refund made in Stripe's dashboard, duplicated and reversed webhooks, a bKash Execute
whose answer is lost, bKash in maintenance. After each, `tools.audit` finds no violation; a ledger
row broken by hand makes it exit non-zero, naming the product."""

from __future__ import annotations

import asyncio
import io
import re
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import psycopg2
import pytest

from tools import audit
from tools.shopclient import (
    TERMINAL_ORDER_STATUSES,
    Customer,
    Http,
    expect,
    is_retryable,
    pay_on_bkash_pages,
    pay_on_stripe_page,
    register,
    stripe_refunds,
)

from .conftest import ADMIN_EMAIL, ADMIN_PASSWORD, Shop, running_shop
from .helpers import admin_of, settle_and_verify

pytestmark = pytest.mark.e2e

INTERVAL = 2
GRACE = 20
PAYMENT_TIMEOUT = 45
# The late checkouts pay this long before their orders time out: later than the timeout minus the
# grace (so reconciliation cannot confirm them first), early enough for 20 payments to go through.
PAY_BEFORE_TIMEOUT = 12
STRIPE_AUTH = {"Authorization": "Bearer sk_test_e2e_observer"}


@pytest.fixture(scope="module")
def bad_day_shop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shop]:
    with running_shop(
        tmp_path_factory.mktemp("e2e-bad-days"),
        SHOP_RECONCILE_INTERVAL=str(INTERVAL),
        SHOP_RECONCILE_GRACE=str(GRACE),
        SHOP_ORDER_PAYMENT_TIMEOUT=str(PAYMENT_TIMEOUT),
        SHOP_ORDER_SWEEP_INTERVAL="1",
        # The shop gives up on a lost Execute answer after 3 s (then asks with Query), not 10.
        SHOP_BKASH_TIMEOUT="3",
    ) as running:
        yield running


@pytest.fixture
def audit_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHOP_AUDIT_EMAIL", ADMIN_EMAIL)
    monkeypatch.setenv("SHOP_AUDIT_PASSWORD", ADMIN_PASSWORD)


async def run_audit(shop: Shop) -> tuple[int, str]:
    out = io.StringIO()
    status = await asyncio.to_thread(audit.main, ["--url", shop.gateway], out)
    return status, out.getvalue()


async def assert_audit_clean(shop: Shop) -> None:
    status, table = await run_audit(shop)
    assert status == 0, table


async def webhooks(http: Http, shop: Shop, mode: str) -> None:
    answer = await http.request("POST", f"{shop.stripe}/_control/webhooks", json={"mode": mode})
    assert expect(answer, 200)["mode"] == mode


async def reconciled(http: Http, shop: Shop, kind: str) -> float:
    """shop_reconciled_total{provider="stripe",kind} as payments itself exposes it."""
    body = expect(await http.request("GET", f"{shop.cluster.url('payments')}/metrics"), 200)
    for line in str(body).splitlines():
        if line.startswith("shop_reconciled_total{") and f'kind="{kind}"' in line and 'provider="stripe"' in line:
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def intent_of(http: Http, shop: Shop, session_id: str) -> str:
    answer = await http.request("GET", f"{shop.stripe}/v1/checkout/sessions/{session_id}", headers=STRIPE_AUTH)
    return str(expect(answer, 200)["payment_intent"])


async def dashboard_refund(http: Http, shop: Shop, intent: str, amount: int | None = None) -> None:
    body = {} if amount is None else {"amount": amount}
    expect(await http.request("POST", f"{shop.stripe}/_control/payment_intents/{intent}/refund", json=body), 200)


async def wait_stock(admin: Customer, product_id: str, stock: int, within: float = 60.0) -> None:
    """Stock released by a refund comes back a moment after the order says refunded (another service)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if (await admin.product(product_id))["stock"] == stock:
            return
        await asyncio.sleep(0.5)


async def checkout(customer: Customer, product_id: str, quantity: int = 1) -> tuple[dict[str, Any], dict[str, Any]]:
    order = await customer.place_order([(product_id, quantity)])
    payment = await customer.start_payment(order["id"], "stripe")
    return order, payment


async def test_with_webhooks_dropped_every_checkout_ends_confirmed_or_refunded(
    bad_day_shop: Shop, audit_credentials: None
) -> None:
    shop = bad_day_shop
    async with Http(retry_for=60) as http:
        admin = await admin_of(http, shop)
        product = await admin.create_product(price="10.00", stock=100)
        customers = [await register(http, shop.gateway) for _ in range(4)]
        paid_before = await reconciled(http, shop, "paid") + await reconciled(http, shop, "paid_refunding")
        await webhooks(http, shop, "drop")
        try:
            # Twenty orders that will be paid only shortly before they time out...
            late = await asyncio.gather(*(customers[i % 4].place_order([(product["id"], 1)]) for i in range(20)))
            # ...and twenty checkouts paid at once: no webhook comes, reconciliation confirms them.
            early = await asyncio.gather(*(checkout(customers[i % 4], product["id"]) for i in range(20)))
            pages = await asyncio.gather(*(pay_on_stripe_page(http, p["redirect_url"]) for _, p in early))
            assert [page.status for page in pages] == [200] * 20
            confirmed = await asyncio.gather(
                *(
                    customers[i % 4].wait_order(o["id"], TERMINAL_ORDER_STATUSES, within=90)
                    for i, (o, _) in enumerate(early)
                )
            )
            assert {o["status"] for o in confirmed} == {"confirmed"}

            expires = min(datetime.fromisoformat(o["expires_at"]) for o in late).timestamp()
            await asyncio.sleep(max(0.0, expires - PAY_BEFORE_TIMEOUT - time.time()))
            late_payments = await asyncio.gather(
                *(customers[i % 4].start_payment(o["id"], "stripe") for i, o in enumerate(late))
            )
            pages = await asyncio.gather(*(pay_on_stripe_page(http, p["redirect_url"]) for p in late_payments))
            assert [page.status for page in pages] == [200] * 20
            timed_out = await asyncio.gather(
                *(customers[i % 4].wait_order(o["id"], TERMINAL_ORDER_STATUSES, within=120) for i, o in enumerate(late))
            )
            assert {o["status"] for o in timed_out} == {"cancelled"}
            refunded = await asyncio.gather(
                *(customers[i % 4].wait_payment(p["id"], {"refunded"}, within=120) for i, p in enumerate(late_payments))
            )
        finally:
            await webhooks(http, shop, "deliver")

        for payment in refunded:
            [refund] = await stripe_refunds(http, shop.stripe, payment["provider_transaction_id"])
            assert refund["amount"] == 1000 and refund["status"] == "succeeded"
        await wait_stock(admin, product["id"], 80)
        orders = {o["id"]: customers[i % 4] for i, (o, _) in enumerate(early)}
        orders.update({o["id"]: customers[i % 4] for i, o in enumerate(late)})
        await settle_and_verify(http, orders, admin, [product["id"]], shop.stripe, within=60)
        assert (await admin.product(product["id"]))["stock"] == 80
        # Every one of the forty was a repair: twenty found paid, twenty found paid for a cancelled order.
        paid_after = await reconciled(http, shop, "paid") + await reconciled(http, shop, "paid_refunding")
        assert paid_after - paid_before == 40
        assert await reconciled(http, shop, "paid_refunding") >= 1
    await assert_audit_clean(shop)


async def _ledger_of(admin: Customer, product_id: str, order_id: str) -> list[tuple[str, int]]:
    movements = await admin.stock_movements(product_id)
    return sorted((m["cause"], int(m["delta"])) for m in movements if m["order_id"] == order_id)


async def test_a_dashboard_refund_of_a_confirmed_order_refunds_it_and_releases_its_stock_once(
    bad_day_shop: Shop, audit_credentials: None
) -> None:
    shop = bad_day_shop
    async with Http(retry_for=60) as http:
        admin = await admin_of(http, shop)
        product = await admin.create_product(price="40.00", stock=5)
        customer = await register(http, shop.gateway)
        order, payment = await checkout(customer, product["id"], 2)
        assert (await pay_on_stripe_page(http, payment["redirect_url"])).status == 200
        await customer.wait_order(order["id"], {"confirmed"}, within=60)
        intent = (await customer.payment(payment["id"]))["provider_transaction_id"]
        refunds_before = await reconciled(http, shop, "refund")

        await webhooks(http, shop, "drop")  # the shop hears of it only from GET /v1/events
        try:
            await dashboard_refund(http, shop, intent)
            refunded = await customer.wait_order(order["id"], {"refunded"}, within=60)
        finally:
            await webhooks(http, shop, "deliver")
        assert refunded["refunded_amount"] == "80.00"
        assert (await customer.payment(payment["id"]))["status"] == "refunded"
        assert len(await stripe_refunds(http, shop.stripe, intent)) == 1
        await wait_stock(admin, product["id"], 5)
        await asyncio.sleep(2 * INTERVAL + 1)  # later passes read the same events again
        assert await _ledger_of(admin, product["id"], order["id"]) == [("order_commit", -2), ("release", 2)]
        assert (await admin.product(product["id"]))["stock"] == 5
        assert await reconciled(http, shop, "refund") == refunds_before + 1
    await assert_audit_clean(shop)


async def test_duplicated_and_reversed_webhooks_have_one_effect_each(
    bad_day_shop: Shop, audit_credentials: None
) -> None:
    shop = bad_day_shop
    async with Http(retry_for=60) as http:
        admin = await admin_of(http, shop)
        product = await admin.create_product(price="25.00", stock=6)
        customer = await register(http, shop.gateway)

        await webhooks(http, shop, "duplicate")
        try:
            twice, twice_payment = await checkout(customer, product["id"], 2)
            assert (await pay_on_stripe_page(http, twice_payment["redirect_url"])).status == 200
            await customer.wait_order(twice["id"], {"confirmed"}, within=60)
        finally:
            await webhooks(http, shop, "deliver")

        # Paid, then refunded in the dashboard at once: the refund's webhook comes before the payment's.
        await webhooks(http, shop, "reverse")
        try:
            reversed_, reversed_payment = await checkout(customer, product["id"], 1)
            assert (await pay_on_stripe_page(http, reversed_payment["redirect_url"])).status == 200
            intent = await intent_of(http, shop, reversed_payment["provider_reference"])
            await dashboard_refund(http, shop, intent)
            await customer.wait_order(reversed_["id"], {"refunded"}, within=90)
        finally:
            await webhooks(http, shop, "deliver")

        await wait_stock(admin, product["id"], 4)
        await settle_and_verify(
            http, {twice["id"]: customer, reversed_["id"]: customer}, admin, [product["id"]], shop.stripe, within=60
        )
        assert len(await stripe_refunds(http, shop.stripe, intent)) == 1
        assert await _ledger_of(admin, product["id"], twice["id"]) == [("order_commit", -2)]
        assert (await admin.product(product["id"]))["stock"] == 4
    await assert_audit_clean(shop)


async def test_a_lost_bkash_execute_answer_captures_once_and_confirms(
    bad_day_shop: Shop, audit_credentials: None
) -> None:
    shop = bad_day_shop
    async with Http(retry_for=60) as http:
        admin = await admin_of(http, shop)
        product = await admin.create_product(price="300.00", stock=3)
        customer = await register(http, shop.gateway)
        order = await customer.place_order([(product["id"], 1)])
        payment = await customer.start_payment(order["id"], "bkash")

        armed = await http.request("POST", f"{shop.bkash}/_control/execute-timeout", json={"times": 1})
        expect(armed, 200)
        callback = await pay_on_bkash_pages(http, payment["redirect_url"])
        assert callback.status == 200, callback.body

        await customer.wait_order(order["id"], {"confirmed"}, within=60)
        paid = await customer.payment(payment["id"])
        assert paid["status"] == "succeeded" and paid["provider_transaction_id"]
        at_bkash = expect(
            await http.request("GET", f"{shop.bkash}/_control/payments/{payment['provider_reference']}"), 200
        )
        assert at_bkash["transactionStatus"] == "Completed"
        assert at_bkash["executeSuccesses"] == 1  # one capture, whatever was asked again
        assert at_bkash["trxID"] == paid["provider_transaction_id"]
    await assert_audit_clean(shop)


async def test_bkash_maintenance_during_payment_creation_is_a_clear_503_then_works(
    bad_day_shop: Shop, audit_credentials: None
) -> None:
    shop = bad_day_shop
    async with Http(retry_for=60) as http:
        admin = await admin_of(http, shop)
        product = await admin.create_product(price="150.00", stock=2)
        customer = await register(http, shop.gateway)
        order = await customer.place_order([(product["id"], 1)])
        body = {"order_id": order["id"], "provider": "bkash"}

        expect(await http.request("POST", f"{shop.bkash}/_control/maintenance", json={"seconds": 4}), 200)
        refused = await customer.call("POST", "/api/payments", json=body, retry=False)
        while refused.status == 409 and is_retryable(refused):  # payments has not heard of the order yet
            await asyncio.sleep(0.1)
            refused = await customer.call("POST", "/api/payments", json=body, retry=False)
        assert refused.status in (502, 503), refused.body
        assert refused.headers.get("Content-Type", "").startswith("application/problem+json")
        assert refused.body["status"] == refused.status and "bkash" in refused.body["detail"]
        assert int(refused.headers["Retry-After"]) > 0

        # The client waits as told and tries again; once bKash is back the payment opens and completes.
        payment = await customer.start_payment(order["id"], "bkash")
        assert payment["status"] == "initiated" and payment["redirect_url"]
        callback = await pay_on_bkash_pages(http, payment["redirect_url"])
        assert callback.status == 200, callback.body
        await customer.wait_order(order["id"], {"confirmed"}, within=60)
        kept = [p for p in await customer.payments_of(order["id"]) if p["status"] == "succeeded"]
        assert [p["id"] for p in kept] == [payment["id"]]
    await assert_audit_clean(shop)


async def test_a_broken_ledger_row_makes_the_audit_fail_naming_the_product(
    bad_day_shop: Shop, audit_credentials: None
) -> None:
    shop = bad_day_shop
    async with Http(retry_for=60) as http:
        admin = await admin_of(http, shop)
        product = await admin.create_product(price="5.00", stock=7)
    assert shop.cluster.database_url
    connection = psycopg2.connect(shop.cluster.database_url)
    connection.autocommit = True
    corrupt = "UPDATE catalog.stock_movements SET delta = delta + %s WHERE product_id = %s AND cause = 'initial'"
    try:
        with connection.cursor() as cursor:
            cursor.execute(corrupt, (1, product["id"]))
            assert cursor.rowcount == 1
        status, table = await run_audit(shop)
        assert status == 1, table
        assert re.search(rf"ledger-sum\s+product {product['id']}", table), table
        assert "ledger sums to 8, stock is 7" in table
    finally:
        with connection.cursor() as cursor:
            cursor.execute(corrupt, (-1, product["id"]))
        connection.close()
    await assert_audit_clean(shop)
