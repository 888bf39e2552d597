"""A client of the shop's public API and of the provider sandboxes' hosted pages, as a real customer or
admin uses them over HTTP. Shared by the end-to-end tests and the benchmark.

Transient failures (connection refused while a service restarts, 502/503/504 from the gateway, 429
with Retry-After) are retried with the same Idempotency-Key where the API takes one, as a careful
client does; anything else is returned to the caller to judge.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp

TRANSIENT_STATUSES = frozenset({429, 502, 503, 504})
TERMINAL_ORDER_STATUSES = frozenset({"confirmed", "cancelled", "refunded"})
BKASH_WALLET = "01770618575"
BKASH_OTP = "123456"
BKASH_PIN = "12121"


class ShopError(AssertionError):
    """An answer the caller did not expect (carries the status and body for the test report)."""

    def __init__(self, method: str, url: str, status: int, body: Any) -> None:
        super().__init__(f"{method} {url} -> {status}: {str(body)[:500]}")
        self.status = status
        self.body = body


@dataclass
class Answer:
    status: int
    body: Any
    headers: dict[str, str]
    url: str


class Http:
    """aiohttp with the retry policy above."""

    def __init__(self, *, retry_for: float = 30.0, limit: int = 200, timeout: float = 30.0) -> None:
        self.retry_for = retry_for
        # Password hashing is deliberately slow: a crowd signing up at once would only queue up at the
        # auth service until the gateway's upstream timeout; a few at a time is faster overall.
        self.password_slots = asyncio.Semaphore(4)
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=limit, force_close=False),
            timeout=aiohttp.ClientTimeout(total=timeout),
        )

    async def close(self) -> None:
        await self.session.close()

    async def __aenter__(self) -> Http:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def request(
        self,
        method: str,
        url: str,
        *,
        json: Any = None,
        data: Any = None,
        headers: dict[str, str] | None = None,
        allow_redirects: bool = True,
        retry: bool = True,
    ) -> Answer:
        deadline = time.monotonic() + (self.retry_for if retry else 0)
        delay = 0.2
        while True:
            try:
                async with self.session.request(
                    method, url, json=json, data=data, headers=headers, allow_redirects=allow_redirects
                ) as response:
                    raw = await response.read()
                    body: Any
                    if "json" in response.headers.get("content-type", ""):
                        try:
                            body = await response.json(content_type=None)
                        except ValueError:
                            body = raw.decode(errors="replace")
                    else:
                        body = raw.decode(errors="replace")
                    answer = Answer(response.status, body, dict(response.headers), str(response.url))
            except (TimeoutError, aiohttp.ClientConnectionError):
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
                continue
            if answer.status not in TRANSIENT_STATUSES or time.monotonic() > deadline:
                return answer
            retry_after = answer.headers.get("Retry-After", "")
            wait = float(retry_after) if retry_after.replace(".", "", 1).isdigit() else delay
            await asyncio.sleep(min(wait, 5.0))
            delay = min(delay * 2, 2.0)


def is_retryable(answer: Answer) -> bool:
    return isinstance(answer.body, dict) and answer.body.get("retryable") is True


def expect(answer: Answer, *statuses: int, what: str = "") -> Any:
    if answer.status not in statuses:
        raise ShopError(what or "request", answer.url, answer.status, answer.body)
    return answer.body


class Customer:
    """One signed-in user of the shop (customer or admin), talking to the gateway."""

    def __init__(self, http: Http, gateway: str, email: str, token: str) -> None:
        self.http = http
        self.gateway = gateway.rstrip("/")
        self.email = email
        self.token = token

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    async def call(
        self, method: str, path: str, *, json: Any = None, key: str | None = None, retry: bool = True
    ) -> Answer:
        headers = dict(self.auth)
        if key:
            headers["Idempotency-Key"] = key
        return await self.http.request(method, f"{self.gateway}{path}", json=json, headers=headers, retry=retry)

    # Catalog (admin)

    async def create_product(self, *, price: str = "1250.00", stock: int = 10, name: str | None = None) -> Any:
        sku = f"E2E-{uuid.uuid4().hex[:12].upper()}"
        body = {"sku": sku, "name": name or f"Product {sku}", "description": "e2e", "price": price, "stock": stock}
        return expect(await self.call("POST", "/api/products", json=body), 201, what="create product")

    async def product(self, product_id: str) -> Any:
        return expect(await self.call("GET", f"/api/products/{product_id}"), 200, what="get product")

    async def stock_movements(self, product_id: str) -> list[Any]:
        items: list[Any] = []
        page = 1
        while True:
            path = f"/api/products/{product_id}/stock-movements?page={page}&page_size=100"
            body = expect(await self.call("GET", path), 200, what="stock movements")
            items += body["items"]
            if len(items) >= body["total"] or not body["items"]:
                return items
            page += 1

    # Orders and payments

    async def place_order(self, lines: list[tuple[str, int]]) -> Any:
        body = {"items": [{"product_id": pid, "quantity": q} for pid, q in lines]}
        answer = await self.call("POST", "/api/orders", json=body, key=str(uuid.uuid4()))
        return expect(answer, 201, 200, what="place order")

    async def order(self, order_id: str) -> Any:
        return expect(await self.call("GET", f"/api/orders/{order_id}"), 200, what="get order")

    async def cancel_order(self, order_id: str) -> Answer:
        return await self.call("POST", f"/api/orders/{order_id}/cancel")

    async def start_payment(self, order_id: str, provider: str) -> Any:
        body = {"order_id": order_id, "provider": provider}
        key = str(uuid.uuid4())
        deadline = time.monotonic() + self.http.retry_for
        answer = await self.call("POST", "/api/payments", json=body, key=key)
        # Payments learns of an order from OrderPlaced, a moment after placement: it says so with a
        # retryable 409, and the client tries again.
        while answer.status == 409 and is_retryable(answer) and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
            answer = await self.call("POST", "/api/payments", json=body, key=key)
        return expect(answer, 201, 200, what=f"start {provider} payment")

    async def payment(self, payment_id: str) -> Any:
        return expect(await self.call("GET", f"/api/payments/{payment_id}"), 200, what="get payment")

    async def payments_of(self, order_id: str) -> list[Any]:
        body = expect(await self.call("GET", f"/api/payments?order_id={order_id}&page_size=100"), 200)
        return list(body["items"] if isinstance(body, dict) else body)

    async def wait_order(
        self, order_id: str, statuses: set[str] | frozenset[str], within: float = 60.0, poll: float = 0.25
    ) -> Any:
        deadline = time.monotonic() + within
        order = await self.order(order_id)
        while order["status"] not in statuses:
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"order {order_id} is {order['status']} after {within:.0f}s, wanted one of {sorted(statuses)}; "
                    f"timeline {order.get('timeline')}"
                )
            await asyncio.sleep(poll)
            order = await self.order(order_id)
        return order

    async def wait_payment(self, payment_id: str, statuses: set[str], within: float = 60.0) -> Any:
        deadline = time.monotonic() + within
        payment = await self.payment(payment_id)
        while payment["status"] not in statuses:
            if time.monotonic() > deadline:
                raise AssertionError(f"payment {payment_id} is {payment['status']} after {within:.0f}s")
            await asyncio.sleep(0.25)
            payment = await self.payment(payment_id)
        return payment


async def register(http: Http, gateway: str, *, email: str | None = None, password: str = "e2e-password-1") -> Customer:
    email = email or f"e2e-{uuid.uuid4().hex[:12]}@example.com"
    body = {"email": email, "password": password, "full_name": "E2E Customer"}
    async with http.password_slots:
        answer = await http.request("POST", f"{gateway}/api/auth/register", json=body)
    # 409 for a fresh random email means our own earlier attempt (answered 504, retried) got through.
    expect(answer, 201, 409, what="register")
    return await login(http, gateway, email, password)


async def login(http: Http, gateway: str, email: str, password: str) -> Customer:
    async with http.password_slots:
        answer = await http.request("POST", f"{gateway}/api/auth/login", json={"email": email, "password": password})
    token = expect(answer, 200, what="login")["access_token"]
    return Customer(http, gateway, email, token)


# What the customer does on the providers' hosted pages


async def pay_on_stripe_page(http: Http, redirect_url: str, outcome: str = "success") -> Answer:
    """Open the Checkout page, then submit its form as the browser would (form post to <url>/pay)."""
    expect(await http.request("GET", redirect_url), 200, what="stripe checkout page")
    return await http.request("POST", f"{redirect_url}/pay", data={"outcome": outcome})


async def pay_on_bkash_pages(
    http: Http, redirect_url: str, *, wallet: str = BKASH_WALLET, otp: str = BKASH_OTP, pin: str = BKASH_PIN
) -> Answer:
    """Wallet, OTP and PIN steps, each answering 303; the last 303 goes to the shop's callback, which
    is followed like a browser does. The returned answer is the callback's."""
    expect(await http.request("GET", redirect_url), 200, what="bkash wallet page")
    for step, value in (("wallet", wallet), ("otp", otp)):
        answer = await http.request("POST", f"{redirect_url}/{step}", data={step: value}, allow_redirects=False)
        expect(answer, 303, what=f"bkash {step}")
    answer = await http.request("POST", f"{redirect_url}/pin", data={"pin": pin}, allow_redirects=False)
    expect(answer, 303, what="bkash pin")
    callback = answer.headers["Location"]
    return await http.request("GET", callback)


def callback_status(url: str) -> str:
    return parse_qs(urlsplit(url).query).get("status", [""])[0]


async def stripe_refunds(http: Http, stripe_url: str, payment_intent: str) -> list[Any]:
    """The refunds the Stripe sandbox holds for one payment intent (what the provider really did)."""
    answer = await http.request(
        "GET",
        f"{stripe_url}/v1/refunds?payment_intent={payment_intent}&limit=100",
        headers={"Authorization": "Bearer sk_test_e2e_observer"},
    )
    return list(expect(answer, 200, what="stripe refunds")["data"])


def money(value: str | Decimal) -> Decimal:
    return Decimal(str(value))
