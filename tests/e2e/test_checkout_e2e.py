"""A customer buys through the gateway and pays on each provider's hosted pages; the saga confirms the
order, commits the stock once and records it in the ledger."""

from __future__ import annotations

from decimal import Decimal

import pytest

from tools.shopclient import Http, callback_status, pay_on_bkash_pages, pay_on_stripe_page, register, stripe_refunds

from .conftest import Shop
from .helpers import admin_of, ledger_by_cause

pytestmark = pytest.mark.e2e


async def test_stripe_checkout_confirms_the_order_and_commits_stock_once(shop: Shop) -> None:
    async with Http() as http:
        admin = await admin_of(http, shop)
        product = await admin.create_product(price="1250.00", stock=10)
        customer = await register(http, shop.gateway)

        order = await customer.place_order([(product["id"], 3)])
        assert order["status"] == "pending_payment"
        assert Decimal(order["total_amount"]) == Decimal("3750.00")
        payment = await customer.start_payment(order["id"], "stripe")
        assert payment["status"] == "initiated"
        assert Decimal(payment["amount"]) == Decimal("3750.00")

        page = await pay_on_stripe_page(http, payment["redirect_url"])
        assert page.status == 200, page.body

        confirmed = await customer.wait_order(order["id"], {"confirmed", "refunded", "cancelled"})
        assert confirmed["status"] == "confirmed", confirmed["timeline"]
        assert [step["status"] for step in confirmed["timeline"]][-1] == "confirmed"
        paid = await customer.payment(payment["id"])
        assert paid["status"] == "succeeded"
        assert paid["provider_transaction_id"], "a paid Stripe payment carries its payment intent"
        assert await stripe_refunds(http, shop.stripe, paid["provider_transaction_id"]) == []

        assert (await customer.product(product["id"]))["stock"] == 7
        movements = await admin.stock_movements(product["id"])
        commits = [m for m in movements if m["cause"] == "order_commit"]
        assert len(commits) == 1
        assert commits[0]["order_id"] == order["id"] and int(commits[0]["delta"]) == -3
        assert sum(int(m["delta"]) for m in movements) == 7


async def test_bkash_checkout_through_wallet_otp_and_pin_confirms_the_order(shop: Shop) -> None:
    async with Http() as http:
        admin = await admin_of(http, shop)
        product = await admin.create_product(price="499.50", stock=5)
        customer = await register(http, shop.gateway)

        order = await customer.place_order([(product["id"], 2)])
        payment = await customer.start_payment(order["id"], "bkash")
        assert payment["provider"] == "bkash" and payment["redirect_url"]

        landing = await pay_on_bkash_pages(http, payment["redirect_url"])
        assert callback_status(landing.url) == "success"
        assert landing.status == 200, landing.body

        confirmed = await customer.wait_order(order["id"], {"confirmed", "refunded", "cancelled"})
        assert confirmed["status"] == "confirmed", confirmed["timeline"]
        paid = await customer.payment(payment["id"])
        assert paid["status"] == "succeeded"
        assert paid["provider_transaction_id"], "a paid bKash payment carries its trxID"
        assert Decimal(paid["amount"]) == Decimal("999.00")

        assert (await customer.product(product["id"]))["stock"] == 3
        causes = ledger_by_cause(await admin.stock_movements(product["id"]))
        assert causes == {"initial": 5, "order_commit": -2}


async def test_a_declined_card_leaves_the_order_payable_and_a_second_attempt_pays(shop: Shop) -> None:
    async with Http() as http:
        admin = await admin_of(http, shop)
        product = await admin.create_product(price="100.00", stock=2)
        customer = await register(http, shop.gateway)
        order = await customer.place_order([(product["id"], 1)])
        payment = await customer.start_payment(order["id"], "stripe")

        declined = await pay_on_stripe_page(http, payment["redirect_url"], outcome="decline")
        assert declined.status == 402
        assert (await customer.order(order["id"]))["status"] == "pending_payment"

        paid_page = await pay_on_stripe_page(http, payment["redirect_url"])
        assert paid_page.status == 200
        confirmed = await customer.wait_order(order["id"], {"confirmed", "refunded", "cancelled"})
        assert confirmed["status"] == "confirmed"
        assert (await customer.product(product["id"]))["stock"] == 1
