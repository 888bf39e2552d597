"""After the payment, through the gateway: an order with a shipping address is paid (bKash, Stripe),
shipped with a tracking number and delivered; an admin refunds 100.00 then 150.00 of its 500.00 (the
sandbox holds both refunds), more than is left is 422, the rest ends the order refunded, and the stock
goes back (one `release` per line) only when the refund says `restock`. Categories and images as the
catalog shows them; malformed input to the new routes is a 4xx problem, never a 5xx; `tools.audit`
finds nothing wrong with what the walk left behind."""

from __future__ import annotations

import asyncio
import time
import uuid
from decimal import Decimal
from typing import Any

import pytest

from payments.settings import (
    SANDBOX_BKASH_APP_KEY,
    SANDBOX_BKASH_APP_SECRET,
    SANDBOX_BKASH_PASSWORD,
    SANDBOX_BKASH_USERNAME,
)
from tools import audit
from tools.shopclient import Customer, Http, expect, pay_on_bkash_pages, pay_on_stripe_page, register, stripe_refunds

from .conftest import ADMIN_EMAIL, ADMIN_PASSWORD, Shop
from .helpers import admin_of

pytestmark = pytest.mark.e2e

ADDRESS = {
    "full_name": "Rahim Uddin",
    "line1": "Flat 4B, 22 Gulshan Avenue",
    "city": "Dhaka",
    "postal_code": "1212",
    "country": "BD",
    "phone": "+8801711000000",
}
SHIPMENT = {"carrier": "RedX", "tracking_number": "RDX-77-0042"}
WALK_STEPS = ["pending_payment", "paid", "confirmed", "shipped", "delivered"]


async def _eventually(probe: Any, what: str, within: float = 30.0) -> Any:
    """Poll `probe` (an async callable) until it answers something truthy."""
    deadline = time.monotonic() + within
    while True:
        found = await probe()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not seen within {within:.0f}s")
        await asyncio.sleep(0.25)


async def _paid_order(http: Http, shop: Shop, admin: Customer, provider: str) -> tuple[Customer, Any, Any, list[str]]:
    """Two lines (200.00 x 1 and 150.00 x 2: 500.00) with an address, paid at `provider`, confirmed."""
    one = await admin.create_product(price="200.00", stock=5)
    two = await admin.create_product(price="150.00", stock=5)
    customer = await register(http, shop.gateway)
    placed = await customer.call(
        "POST",
        "/api/orders",
        json={
            "items": [{"product_id": one["id"], "quantity": 1}, {"product_id": two["id"], "quantity": 2}],
            "shipping_address": ADDRESS,
        },
        key=str(uuid.uuid4()),
    )
    order = expect(placed, 201, what="place order")
    assert order["total_amount"] == "500.00" and order["shipping_address"] == {**ADDRESS, "line2": None}

    early = await admin.call("POST", f"/api/orders/{order['id']}/ship", json=SHIPMENT)
    assert early.status == 409, early.body  # pending_payment
    assert early.headers["Content-Type"].startswith("application/problem+json")

    payment = await customer.start_payment(order["id"], provider)
    if provider == "bkash":
        landed = await pay_on_bkash_pages(http, payment["redirect_url"])
        assert landed.status == 200 and landed.body["status"] == "succeeded", landed.body
    else:
        assert (await pay_on_stripe_page(http, payment["redirect_url"])).status == 200
    confirmed = await customer.wait_order(order["id"], {"confirmed", "refunded", "cancelled"})
    assert confirmed["status"] == "confirmed", confirmed["timeline"]
    payment = await customer.wait_payment(payment["id"], {"succeeded"})
    return customer, confirmed, payment, [one["id"], two["id"]]


async def _ship_and_deliver(admin: Customer, customer: Customer, order_id: str) -> None:
    for path, body in ((f"/api/orders/{order_id}/ship", SHIPMENT), (f"/api/orders/{order_id}/deliver", None)):
        refused = await customer.call("POST", path, json=body)
        assert refused.status == 403, refused.body
    early = await admin.call("POST", f"/api/orders/{order_id}/deliver")
    assert early.status == 409, early.body  # not shipped yet

    expect(await admin.call("POST", f"/api/orders/{order_id}/ship", json=SHIPMENT), 200, what="ship")
    seen = await customer.order(order_id)
    assert seen["status"] == "shipped" and {k: seen["shipment"][k] for k in SHIPMENT} == SHIPMENT
    again = await admin.call("POST", f"/api/orders/{order_id}/ship", json=SHIPMENT)
    assert again.status == 409, again.body  # shipped once

    expect(await admin.call("POST", f"/api/orders/{order_id}/deliver"), 200, what="deliver")
    seen = await customer.order(order_id)
    assert seen["status"] == "delivered" and seen["shipment"]["delivered_at"] >= seen["shipment"]["shipped_at"]
    assert [step["status"] for step in seen["timeline"]] == WALK_STEPS, seen["timeline"]


async def _refund(admin: Customer, payment_id: str, **body: Any) -> Any:
    return await admin.call(
        "POST", f"/api/payments/{payment_id}/refund", json={"reason": "customer service", **body}, key=str(uuid.uuid4())
    )


async def _refunds_at_provider(http: Http, shop: Shop, payment: dict[str, Any]) -> list[Decimal]:
    """What the sandbox itself holds for this payment (its own record, not the shop's)."""
    if payment["provider"] == "stripe":
        refunds = await stripe_refunds(http, shop.stripe, payment["provider_transaction_id"])
        return sorted(Decimal(r["amount"]) / 100 for r in refunds)
    state = expect(await http.request("GET", f"{shop.bkash}/_control/payments/{payment['provider_reference']}"), 200)
    return sorted(Decimal(r["amount"]) for r in state["refunds"])


async def _bkash_latest_refund(http: Http, shop: Shop, payment: dict[str, Any]) -> Any:
    """bKash's own refund status query (payment/refund with only paymentID and trxID), as a merchant
    with the sandbox's credentials asks it: it answers the latest refund of the payment."""
    merchant = {"username": SANDBOX_BKASH_USERNAME, "password": SANDBOX_BKASH_PASSWORD}
    app = {"app_key": SANDBOX_BKASH_APP_KEY, "app_secret": SANDBOX_BKASH_APP_SECRET}
    token = expect(
        await http.request("POST", f"{shop.bkash}/tokenized/checkout/token/grant", json=app, headers=merchant), 200
    )
    status = await http.request(
        "POST",
        f"{shop.bkash}/tokenized/checkout/payment/refund",
        json={"paymentID": payment["provider_reference"], "trxID": payment["provider_transaction_id"]},
        headers={"Authorization": token["id_token"], "X-App-Key": SANDBOX_BKASH_APP_KEY},
    )
    return expect(status, 200, what="bkash refund status")


async def _refund_in_two_parts(http: Http, shop: Shop, admin: Customer, customer: Customer, order: Any) -> Any:
    """100.00 then 150.00: the payment is partially_refunded with 250.00 back, at the shop and at the
    provider; the delivered order keeps its status and counts the 250.00. Then 250.01 is too much."""
    payment_id = (await customer.payments_of(order["id"]))[0]["id"]
    for amount, total in (("100.00", "100.00"), ("150.00", "250.00")):
        asked = await _refund(admin, payment_id, amount=amount)
        assert asked.status == 202, asked.body
        payment = await _eventually(
            lambda total=total: _payment_if(customer, payment_id, total), f"payment refunded {total}"
        )
        assert payment["status"] == "partially_refunded", payment
    assert await _refunds_at_provider(http, shop, payment) == [Decimal("100.00"), Decimal("150.00")]
    if payment["provider"] == "bkash":
        latest = await _bkash_latest_refund(http, shop, payment)
        assert (latest["transactionStatus"], latest["amount"]) == ("Completed", "150.00"), latest
        assert latest["originalTrxID"] == payment["provider_transaction_id"]

    seen = await _eventually(lambda: _order_if(customer, order["id"], "250.00"), "order counts 250.00")
    assert seen["status"] == "delivered", seen["timeline"]

    too_much = await _refund(admin, payment_id, amount="250.01")
    assert too_much.status == 422, too_much.body
    assert too_much.headers["Content-Type"].startswith("application/problem+json")
    assert "250.00" in too_much.body["detail"]
    assert (await customer.payment(payment_id))["refunded_amount"] == "250.00"
    return payment


async def _payment_if(customer: Customer, payment_id: str, refunded: str) -> Any:
    payment = await customer.payment(payment_id)
    return payment if payment["refunded_amount"] == refunded else None


async def _order_if(customer: Customer, order_id: str, refunded: str) -> Any:
    order = await customer.order(order_id)
    return order if order["refunded_amount"] == refunded else None


async def _releases(admin: Customer, product_id: str, order_id: str) -> list[dict[str, Any]]:
    movements = await admin.stock_movements(product_id)
    return [m for m in movements if m["cause"] == "release" and m["order_id"] == order_id]


async def _audit_of(shop: Shop, order_id: str, products: list[str]) -> list[audit.Violation]:
    """The audit over the whole shop, narrowed to what this walk made (other tests share the shop and
    may still have orders on their way)."""
    violations = await asyncio.to_thread(audit.audit, shop.gateway, ADMIN_EMAIL, ADMIN_PASSWORD)
    mine = (order_id, *products)
    return [v for v in violations if any(name in f"{v.subject} {v.detail}" for name in mine)]


async def test_a_bkash_order_is_delivered_refunded_in_parts_then_returned_with_restock(shop: Shop) -> None:
    async with Http() as http:
        admin = await admin_of(http, shop)
        customer, order, payment, products = await _paid_order(http, shop, admin, "bkash")
        await _ship_and_deliver(admin, customer, order["id"])
        payment = await _refund_in_two_parts(http, shop, admin, customer, order)
        assert [(await admin.product(p))["stock"] for p in products] == [4, 3]  # no restock yet

        rest = await _refund(admin, payment["id"], restock=True)
        assert rest.status == 202, rest.body
        refunded = await customer.wait_order(order["id"], {"refunded"})
        assert refunded["refunded_amount"] == "500.00"
        assert [step["status"] for step in refunded["timeline"]][-2:] == ["refund_pending", "refunded"]
        done = await customer.wait_payment(payment["id"], {"refunded"})
        assert done["refunded_amount"] == "500.00"
        assert await _refunds_at_provider(http, shop, done) == [Decimal("100.00"), Decimal("150.00"), Decimal("250.00")]
        latest = await _bkash_latest_refund(http, shop, done)
        assert (latest["transactionStatus"], latest["amount"]) == ("Completed", "250.00"), latest
        nothing_left = await _refund(admin, payment["id"], amount="0.01")
        assert nothing_left.status in (409, 422), nothing_left.body
        for path, body in ((f"/api/orders/{order['id']}/ship", SHIPMENT), (f"/api/orders/{order['id']}/deliver", None)):
            ended = await admin.call("POST", path, json=body)
            assert ended.status == 409, ended.body  # a refunded order is not shipped again

        for product_id, quantity in zip(products, (1, 2), strict=True):
            [release] = await _eventually(
                lambda product_id=product_id: _releases(admin, product_id, order["id"]), "the release"
            )
            assert int(release["delta"]) == quantity
        assert [(await admin.product(p))["stock"] for p in products] == [5, 5]

        assert await _audit_of(shop, order["id"], products) == []


async def test_a_stripe_order_refunded_in_parts_without_restock_keeps_its_stock_out(shop: Shop) -> None:
    async with Http() as http:
        admin = await admin_of(http, shop)
        customer, order, payment, products = await _paid_order(http, shop, admin, "stripe")
        await _ship_and_deliver(admin, customer, order["id"])
        await _refund_in_two_parts(http, shop, admin, customer, order)

        rest = await _refund(admin, payment["id"])  # a delivered order: no restock unless asked
        assert rest.status == 202, rest.body
        refunded = await customer.wait_order(order["id"], {"refunded"})
        assert refunded["refunded_amount"] == "500.00"
        done = await customer.wait_payment(payment["id"], {"refunded"})
        assert await _refunds_at_provider(http, shop, done) == [Decimal("100.00"), Decimal("150.00"), Decimal("250.00")]

        # The catalog applies PaymentRefunded on its own time; the audit below reads the ledger again.
        await asyncio.sleep(1.0)
        for product_id in products:
            assert await _releases(admin, product_id, order["id"]) == []
        assert [(await admin.product(p))["stock"] for p in products] == [4, 3]
        assert await _audit_of(shop, order["id"], products) == []


async def _create(admin: Customer, **fields: Any) -> Any:
    sku = f"E2E-{uuid.uuid4().hex[:12].upper()}"
    body = {"sku": sku, "name": f"Product {sku}", "price": "99.00", "stock": 3, **fields}
    return await admin.call("POST", "/api/products", json=body)


async def _categories(customer: Customer) -> dict[str, int]:
    listed = expect(await customer.call("GET", "/api/categories"), 200, what="categories")
    return {row["slug"]: row["product_count"] for row in listed}


async def test_the_category_filter_and_the_category_list_agree_and_only_https_images_are_taken(shop: Shop) -> None:
    async with Http() as http:
        admin = await admin_of(http, shop)
        customer = await register(http, shop.gateway)
        slug = f"saree-{uuid.uuid4().hex[:6]}"
        images = ["https://cdn.example.com/a.jpg", "https://cdn.example.com/b.webp"]
        made = [expect(await _create(admin, category=slug, images=images), 201) for _ in range(2)]
        expect(await _create(admin, category=f"{slug}-silk"), 201)
        assert (made[0]["category"], made[0]["images"]) == (slug, images)

        async def agreeing() -> Any:
            listed = expect(await customer.call("GET", f"/api/products?category={slug}&page_size=100"), 200)
            counted = await _categories(customer)
            return (listed, counted) if listed["total"] == counted.get(slug) == 2 else None

        listed, counted = await _eventually(agreeing, "the filter and the category list agreeing")
        assert {p["id"] for p in listed["items"]} == {p["id"] for p in made}
        assert all(p["category"] == slug and p["images"] == images for p in listed["items"])
        assert counted[f"{slug}-silk"] == 1
        assert (await customer.product(made[0]["id"]))["images"] == images

        for bad in ("javascript:alert(1)", "http://cdn.example.com/a.jpg", "data:image/png;base64,AAAA"):
            refused = await _create(admin, category=slug, images=[bad])
            assert refused.status == 422, (bad, refused.body)
            assert refused.headers["Content-Type"].startswith("application/problem+json")
            patched = await admin.call("PATCH", f"/api/products/{made[0]['id']}", json={"images": [bad]})
            assert patched.status == 422, (bad, patched.body)
        assert (await customer.product(made[0]["id"]))["images"] == images
        assert (await _categories(customer))[slug] == 2

        # Moved to another category, then archived: the filter and the list follow the products.
        moved = await admin.call("PATCH", f"/api/products/{made[1]['id']}", json={"category": f"{slug}-silk"})
        assert moved.status == 200 and moved.body["category"] == f"{slug}-silk", moved.body
        assert (await admin.call("DELETE", f"/api/products/{made[0]['id']}")).status == 204
        counted = await _categories(customer)
        assert slug not in counted and counted[f"{slug}-silk"] == 2
        assert expect(await customer.call("GET", f"/api/products?category={slug}"), 200)["total"] == 0
        silk = expect(await customer.call("GET", f"/api/products?category={slug}-silk"), 200)
        assert silk["total"] == 2 and made[1]["id"] in {p["id"] for p in silk["items"]}
        cleared = await admin.call("PATCH", f"/api/products/{made[1]['id']}", json={"category": None})
        assert cleared.status == 200 and cleared.body["category"] is None, cleared.body
        assert (await _categories(customer))[f"{slug}-silk"] == 1


async def test_malformed_input_to_the_new_routes_is_a_4xx_problem(shop: Shop) -> None:
    async with Http() as http:
        admin = await admin_of(http, shop)
        customer = await register(http, shop.gateway)
        product = await admin.create_product(price="10.00", stock=5)
        order = await customer.place_order([(product["id"], 1)])
        payment = await customer.start_payment(order["id"], "stripe")
        line = {"product_id": product["id"], "quantity": 1}

        attempts: list[tuple[Customer, str, str, Any]] = [
            (admin, "POST", f"/api/orders/{order['id']}/ship", {}),
            (admin, "POST", f"/api/orders/{order['id']}/ship", []),
            (admin, "POST", f"/api/orders/{order['id']}/ship", {"carrier": "", "tracking_number": "x"}),
            (admin, "POST", f"/api/orders/{order['id']}/ship", {"carrier": 5, "tracking_number": None}),
            (admin, "POST", f"/api/orders/{order['id']}/ship", {"carrier": "x" * 5000, "tracking_number": "y"}),
            (admin, "POST", f"/api/orders/{order['id']}/ship", {"carrier": "a\x00b", "tracking_number": "y"}),
            (admin, "POST", "/api/orders/not-a-uuid/ship", SHIPMENT),
            (admin, "POST", f"/api/orders/{uuid.uuid4()}/ship", SHIPMENT),
            (admin, "POST", "/api/orders/%00/deliver", None),
            (admin, "POST", f"/api/orders/{uuid.uuid4()}/deliver", None),
            (customer, "POST", "/api/orders", {"items": [line], "shipping_address": "Dhaka"}),
            (customer, "POST", "/api/orders", {"items": [line], "shipping_address": {**ADDRESS, "country": "ZZ"}}),
            (customer, "POST", "/api/orders", {"items": [line], "shipping_address": {**ADDRESS, "full_name": ""}}),
            (customer, "POST", "/api/orders", {"items": [line], "shipping_address": {**ADDRESS, "city": ["x"]}}),
            (customer, "POST", "/api/orders", {"items": [line], "shipping_address": {"line1": "no name"}}),
            (customer, "POST", "/api/orders", {"items": [line], "shipping_address": {**ADDRESS, "zip": "extra"}}),
            (customer, "POST", "/api/orders", {"items": [line], "shipping_address": {**ADDRESS, "phone": "9" * 500}}),
            (admin, "POST", f"/api/payments/{payment['id']}/refund", {"reason": "x", "amount": "abc"}),
            (admin, "POST", f"/api/payments/{payment['id']}/refund", {"reason": "x", "amount": "-1"}),
            (admin, "POST", f"/api/payments/{payment['id']}/refund", {"reason": "x", "amount": "0"}),
            (admin, "POST", f"/api/payments/{payment['id']}/refund", {"reason": "x", "amount": "1e999"}),
            (admin, "POST", f"/api/payments/{payment['id']}/refund", {"reason": "x", "amount": "NaN"}),
            (admin, "POST", f"/api/payments/{payment['id']}/refund", {"reason": "x", "amount": "Infinity"}),
            (admin, "POST", f"/api/payments/{payment['id']}/refund", {"reason": "x", "amount": "1.001"}),
            (admin, "POST", f"/api/payments/{payment['id']}/refund", {"reason": "x", "amount": 10**30}),
            (admin, "POST", f"/api/payments/{payment['id']}/refund", {"reason": "x", "restock": "maybe"}),
            (admin, "POST", f"/api/payments/{payment['id']}/refund", {"reason": "x", "amount": "1.00"}),  # unpaid
            (admin, "POST", f"/api/payments/{payment['id']}/refund", {"reason": "x", "amount": True}),
            (admin, "POST", f"/api/payments/{payment['id']}/refund", {"reason": "x", "amount": 1e308}),
            (admin, "POST", f"/api/payments/{payment['id']}/refund", {"reason": None}),
            (admin, "POST", f"/api/payments/{payment['id']}/refund", {"reason": "x" * 100_000}),
            (admin, "POST", f"/api/payments/{payment['id']}/refund", {"reason": "x", "amount": {"$gt": 0}}),
            (admin, "POST", "/api/payments/not-a-uuid/refund", {"reason": "x"}),
            (customer, "POST", f"/api/payments/{payment['id']}/refund", {"reason": "x", "amount": "1.00"}),
            (customer, "GET", "/api/products?category=NOT%20A%20SLUG", None),
            (customer, "GET", "/api/products?category=" + "a" * 500, None),
            (customer, "GET", "/api/products?category=%00", None),
            (admin, "POST", "/api/products", {"sku": "E2E-BAD-1", "name": "n", "price": "1.00", "images": "https://x"}),
            (admin, "POST", "/api/products", {"sku": "E2E-BAD-2", "name": "n", "price": "1.00", "category": "A B"}),
            (admin, "POST", "/api/products", {"sku": "E2E-BAD-3", "name": "n", "price": "1.00", "images": [None]}),
            (
                admin,
                "POST",
                "/api/products",
                {"sku": "E2E-BAD-4", "name": "n", "price": "1.00", "images": [f"https://x/{i}" for i in range(11)]},
            ),
        ]
        for who, method, path, body in attempts:
            answer = await who.call(method, path, json=body, retry=False)
            assert 400 <= answer.status < 500, (method, path, body, answer.status, answer.body)
            if answer.status != 404 or path.startswith("/api/orders/") or path.startswith("/api/payments/"):
                assert answer.headers.get("Content-Type", "").startswith("application/problem+json"), (path, answer)

        for key in ("k" * 10_000, " ", "a\tb"):
            keyed = await admin.call(
                "POST", f"/api/payments/{payment['id']}/refund", json={"reason": "x", "amount": "1.00"}, key=key
            )
            assert 400 <= keyed.status < 500, (key[:20], keyed.status, keyed.body)
        for path in ("/api/orders?status=bogus", "/api/payments?status=bogus", "/api/payments?status=" + "x" * 5000):
            assert (await admin.call("GET", path, retry=False)).status == 422, path
        for path in ("/api/orders?status=delivered", "/api/payments?status=partially_refunded"):
            assert (await admin.call("GET", path, retry=False)).status == 200, path

        # The category list is not paged: paging parameters are ignored, and never a 5xx.
        ignored = await customer.call("GET", "/api/categories?page=-1&page_size=1" + "0" * 30, retry=False)
        assert ignored.status == 200 and isinstance(ignored.body, list), ignored.body

        for path in (f"/api/orders/{order['id']}/ship", f"/api/payments/{payment['id']}/refund"):
            raw = await http.request(
                "POST",
                f"{shop.gateway}{path}",
                data=b"{not json",
                headers={**admin.auth, "Content-Type": "application/json"},
                retry=False,
            )
            assert 400 <= raw.status < 500, (path, raw.status, raw.body)
        still = await customer.order(order["id"])
        assert (still["status"], still["shipment"]) == ("pending_payment", None)
        assert (await customer.payment(payment["id"]))["refunded_amount"] == "0.00"
