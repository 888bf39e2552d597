"""The bKash checkout in a real headless Chromium: the customer opens the payment's redirect URL, types
wallet, OTP and PIN into the sandbox's pages and lands on the shop's callback; the order is confirmed."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tools.shopclient import BKASH_OTP, BKASH_PIN, BKASH_WALLET, Http, callback_status, register

from .conftest import Shop
from .helpers import admin_of

pytestmark = pytest.mark.e2e

CHROMIUM = Path(os.environ.get("SHOP_E2E_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_PRESENT = CHROMIUM.exists()
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


async def test_bkash_checkout_in_a_headless_browser(shop: Shop) -> None:
    if not CHROMIUM_PRESENT:
        message = f"{CHROMIUM} is missing: apt-get install -y chromium chromium-driver"
        if os.environ.get("CI"):
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    from playwright.async_api import async_playwright

    async with Http() as http:
        admin = await admin_of(http, shop)
        product = await admin.create_product(price="860.00", stock=4)
        customer = await register(http, shop.gateway)
        order = await customer.place_order([(product["id"], 1)])
        payment = await customer.start_payment(order["id"], "bkash")

        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            try:
                page = await browser.new_page()
                await page.goto(payment["redirect_url"])
                await page.fill("input[name=wallet]", BKASH_WALLET)
                async with page.expect_navigation():
                    await page.click("form[data-step=wallet] button[type=submit]")
                await page.fill("input[name=otp]", BKASH_OTP)
                async with page.expect_navigation():
                    await page.click("form[data-step=otp] button[type=submit]")
                await page.fill("input[name=pin]", BKASH_PIN)
                async with page.expect_navigation():
                    await page.click("form[data-step=pin] button[type=submit]")
                landed = page.url
                body = await page.content()
            finally:
                await browser.close()

        assert landed.startswith(f"{shop.gateway}/api/payments/bkash/callback"), landed
        assert callback_status(landed) == "success"
        assert "succeeded" in body or "success" in body
        confirmed = await customer.wait_order(order["id"], {"confirmed", "refunded", "cancelled"})
        assert confirmed["status"] == "confirmed", confirmed["timeline"]
        assert (await customer.payment(payment["id"]))["status"] == "succeeded"
        assert (await customer.product(product["id"]))["stock"] == 3
