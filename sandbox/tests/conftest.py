"""Fixtures: each sandbox served over real HTTP, and a merchant endpoint that verifies webhooks."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import stripe
from fastapi import FastAPI, Request, Response
from starlette.applications import Starlette

from sandbox.bkash_sandbox import BkashSandboxSettings
from sandbox.bkash_sandbox import create_app as create_bkash_app
from sandbox.stripe_sandbox import StripeSandboxSettings
from sandbox.stripe_sandbox import create_app as create_stripe_app
from sandbox.testing import serve_in_thread

WEBHOOK_SECRET = "whsec_sandbox_tests"


@dataclass
class WebhookReceiver:
    """The merchant's webhook endpoint: verifies each delivery as the payments service must."""

    secret: str
    url: str = ""
    # How many of the next verified deliveries to refuse with a 500 (to exercise retries).
    fail_next: int = 0
    # How long each delivery takes to answer (a slow endpoint).
    delay: float = 0.0
    events: list[stripe.Event] = field(default_factory=list)
    deliveries: int = 0
    rejected: int = 0
    in_flight: int = 0
    max_in_flight: int = 0
    # Bumped by reset(): a slow delivery still running from an earlier test records nothing.
    generation: int = 0
    _changed: threading.Condition = field(default_factory=threading.Condition)

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.post("/webhook")
        async def webhook(request: Request) -> Response:
            raw = await request.body()
            try:
                event = stripe.Webhook.construct_event(raw, request.headers.get("stripe-signature"), self.secret)
            except (ValueError, stripe.SignatureVerificationError):
                with self._changed:
                    self.rejected += 1
                return Response(status_code=400)
            with self._changed:
                generation = self.generation
                self.deliveries += 1
                self.in_flight += 1
                self.max_in_flight = max(self.max_in_flight, self.in_flight)
            try:
                if self.delay:
                    await asyncio.sleep(self.delay)
            finally:
                with self._changed:
                    if generation == self.generation:
                        self.in_flight -= 1
            with self._changed:
                if generation != self.generation:
                    return Response(status_code=500)
                if self.fail_next > 0:
                    self.fail_next -= 1
                    return Response(status_code=500)
                self.events.append(event)
                self._changed.notify_all()
            return Response(status_code=200)

        return app

    def reset(self) -> None:
        with self._changed:
            self.generation += 1
            self.fail_next = 0
            self.delay = 0.0
            self.events.clear()
            self.deliveries = 0
            self.rejected = 0
            self.in_flight = 0
            self.max_in_flight = 0

    def wait_for_count(self, count: int, timeout: float = 10.0) -> list[stripe.Event]:
        """The first `count` deliveries that got a 2xx, in the order they arrived."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while len(self.events) < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"{len(self.events)} of {count} deliveries arrived")
                self._changed.wait(remaining)
            return self.events[:count]

    def wait_for(self, event_type: str, count: int = 1, timeout: float = 5.0) -> list[stripe.Event]:
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                found = [e for e in self.events if e.type == event_type]
                if len(found) >= count:
                    return found
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"no {count}x {event_type} delivered; got {[e.type for e in self.events]}")
                self._changed.wait(remaining)


@dataclass
class StripeSandbox:
    base_url: str
    app: Starlette
    client: stripe.StripeClient
    http: httpx.Client

    def events(self, event_type: str | None = None) -> list[dict[str, Any]]:
        params = {"type": event_type} if event_type else {}
        response = self.http.get(f"{self.base_url}/_control/events", params=params)
        response.raise_for_status()
        return list(response.json()["data"])

    def control(self, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        """POST a control and return its answer (which must be a 2xx)."""
        response = self.http.post(f"{self.base_url}/_control{path}", json=body or {})
        assert response.is_success, response.text
        return dict(response.json())

    def wait_for_delivery(self, event_id: str, status: str, timeout: float = 5.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            record = self.http.get(f"{self.base_url}/_control/events/{event_id}").json()
            if record["delivery_status"] == status:
                return dict(record)
            if time.monotonic() > deadline:
                raise AssertionError(f"event {event_id} is {record['delivery_status']}, not {status}")
            time.sleep(0.05)


@pytest.fixture(scope="module")
def _served_receiver() -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver(secret=WEBHOOK_SECRET)
    with serve_in_thread(receiver.app()) as base_url:
        receiver.url = f"{base_url}/webhook"
        yield receiver


@pytest.fixture
def webhook_receiver(_served_receiver: WebhookReceiver) -> WebhookReceiver:
    _served_receiver.reset()
    return _served_receiver


def stripe_settings(webhook_url: str, **overrides: Any) -> StripeSandboxSettings:
    values: dict[str, Any] = {
        "webhook_url": webhook_url,
        "webhook_secret": WEBHOOK_SECRET,
        "webhook_retry_delays": [0.1, 0.2],
        **overrides,
    }
    return StripeSandboxSettings(**values)


@contextmanager
def stripe_served(settings: StripeSandboxSettings) -> Iterator[StripeSandbox]:
    """A Stripe sandbox of its own, for tests that need settings the shared one does not have."""
    app = create_stripe_app(settings)
    try:
        with serve_in_thread(app) as base_url, httpx.Client(timeout=10) as http:
            yield StripeSandbox(base_url=base_url, app=app, client=stripe_client(base_url), http=http)
    finally:
        app.state.dispatcher.close()


def stripe_client(api_base: str, key: str = "sk_test_sandbox") -> stripe.StripeClient:
    # No automatic retries: the tests want to see each answer the sandbox gives.
    return stripe.StripeClient(key, base_addresses={"api": api_base}, max_network_retries=0)


@pytest.fixture(scope="module")
def _served_stripe(_served_receiver: WebhookReceiver) -> Iterator[StripeSandbox]:
    # One server per module (starting and stopping uvicorn costs a few tenths of a second);
    # each test starts from a reset sandbox.
    app = create_stripe_app(stripe_settings(_served_receiver.url))
    with serve_in_thread(app) as base_url, httpx.Client(timeout=10) as http:
        yield StripeSandbox(base_url=base_url, app=app, client=stripe_client(base_url), http=http)
    app.state.dispatcher.close()


@pytest.fixture
def stripe_sandbox(_served_stripe: StripeSandbox, webhook_receiver: WebhookReceiver) -> StripeSandbox:
    _served_stripe.http.post(f"{_served_stripe.base_url}/_control/reset").raise_for_status()
    webhook_receiver.reset()
    return _served_stripe


@dataclass
class BkashSandbox:
    base_url: str
    settings: BkashSandboxSettings
    http: httpx.Client
    id_token: str = ""

    def grant(self) -> dict[str, Any]:
        answer = self.post_json(
            "/tokenized/checkout/token/grant",
            {"app_key": self.settings.app_key, "app_secret": self.settings.app_secret},
            headers={"username": self.settings.username, "password": self.settings.password},
        ).json()
        self.id_token = answer.get("id_token", "")
        return dict(answer)

    def post_json(self, path: str, body: Any, headers: dict[str, str] | None = None) -> httpx.Response:
        return self.http.post(f"{self.base_url}{path}", json=body, headers=headers or {})

    def call(self, path: str, body: dict[str, Any], timeout: float | None = None) -> dict[str, Any]:
        """An authorised API call that must answer 200; returns its JSON."""
        response = self.http.post(
            f"{self.base_url}/tokenized/checkout{path}",
            json=body,
            headers={"Authorization": self.id_token, "X-APP-Key": self.settings.app_key},
            timeout=timeout or self.http.timeout,
        )
        assert response.status_code == 200, response.text
        return dict(response.json())

    def create(self, amount: Any = "100.00", invoice: str = "INV-1", **extra: Any) -> dict[str, Any]:
        body = {
            "mode": "0011",
            "payerReference": "01770618575",
            "callbackURL": "http://shop.test/api/payments/bkash/callback",
            "amount": amount,
            "currency": "BDT",
            "intent": "sale",
            "merchantInvoiceNumber": invoice,
            **extra,
        }
        return self.call("/create", body)

    def customer_pays(
        self, bkash_url: str, wallet: str = "01770618575", otp: str = "123456", pin: str = "12121"
    ) -> httpx.Response:
        """Walk the hosted pages as a browser would; return the last response (a 303 or a page)."""
        response = self.http.post(f"{bkash_url}/wallet", data={"wallet": wallet})
        for field_name, value in (("otp", otp), ("pin", pin)):
            if response.status_code != 303 or not response.headers["location"].startswith(bkash_url):
                return response
            step_url = response.headers["location"]
            assert self.http.get(step_url).status_code == 200
            response = self.http.post(step_url, data={field_name: value})
        return response

    def control(self, path: str) -> httpx.Response:
        return self.http.get(f"{self.base_url}/_control{path}")

    def set_control(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        response = self.http.post(f"{self.base_url}/_control{path}", json=body)
        assert response.is_success, response.text
        return dict(response.json())


@pytest.fixture(scope="module")
def _served_bkash() -> Iterator[BkashSandbox]:
    settings = BkashSandboxSettings()
    with serve_in_thread(create_bkash_app(settings)) as base_url, httpx.Client(timeout=10) as http:
        yield BkashSandbox(base_url=base_url, settings=settings, http=http)


@pytest.fixture
def bkash_sandbox(_served_bkash: BkashSandbox) -> BkashSandbox:
    _served_bkash.http.post(f"{_served_bkash.base_url}/_control/reset").raise_for_status()
    _served_bkash.grant()
    return _served_bkash
