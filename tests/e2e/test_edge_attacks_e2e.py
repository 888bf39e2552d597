"""The public door of the real distributed shop, as an attacker uses it: raw request targets over a
socket (curl --path-as-is; httpx and requests would resolve the dot segments before sending), spoofed
forwarding headers, many client addresses. Behind the gateway every service runs as its own process."""

from __future__ import annotations

import http.client
import json
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from shopkit.settings import DEV_INTERNAL_TOKEN
from shopkit.testing import free_port, local_http
from tools.supervisor import REPO_ROOT

from .conftest import ADMIN_EMAIL, ADMIN_PASSWORD, Shop

pytestmark = pytest.mark.e2e

SERVICE_TOKEN = {"X-Shop-Service-Token": DEV_INTERNAL_TOKEN}  # the shop under test runs with the default


@dataclass
class Raw:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def send(
    url: str, method: str, target: bytes, headers: dict[str, str] | None = None, body: bytes = b"", source: str = ""
) -> Raw:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    lines = [method.encode() + b" " + target + b" HTTP/1.1", f"Host: {host}:{port}".encode(), b"Connection: close"]
    lines += [f"{k}: {v}".encode("latin-1") for k, v in (headers or {}).items()]
    if method in ("POST", "PUT", "PATCH"):
        lines.append(f"Content-Length: {len(body)}".encode())
    with socket.create_connection((host, port), timeout=30, source_address=(source, 0) if source else None) as sock:
        sock.sendall(b"\r\n".join(lines) + b"\r\n\r\n" + body)
        response = http.client.HTTPResponse(sock, method=method)
        response.begin()
        return Raw(response.status, {k.lower(): v for k, v in response.getheaders()}, response.read())


def assert_refused(response: Raw) -> None:
    assert response.status == 400, (response.status, response.body[:300])
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["status"] == 400


@pytest.fixture(scope="module")
def product_id(shop: Shop) -> str:
    with httpx.Client(base_url=shop.gateway, timeout=30) as client:
        login = client.post("/api/auth/login", json={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD})
        admin = {"Authorization": f"Bearer {login.json()['access_token']}"}
        created = client.post(
            "/api/products",
            json={"sku": f"EDGE-{uuid.uuid4().hex[:8]}", "name": "Edge", "price": "10.00", "stock": 3},
            headers=admin,
        )
        assert created.status_code == 201, created.text
        return str(created.json()["id"])


@pytest.fixture(scope="module")
def customer_token(shop: Shop) -> str:
    email = f"edge-{uuid.uuid4().hex[:8]}@example.com"
    with httpx.Client(base_url=shop.gateway, timeout=30) as client:
        registered = client.post(
            "/api/auth/register", json={"email": email, "password": "edge-pass-123", "full_name": "Edge Tester"}
        )
        assert registered.status_code == 201, registered.text
        login = client.post("/api/auth/login", json={"email": email, "password": "edge-pass-123"})
        return str(login.json()["access_token"])


def test_the_internal_lookup_is_real_but_no_spelling_of_it_passes_the_gateway(shop: Shop, product_id: str) -> None:
    lookup = json.dumps({"ids": [product_id]}).encode()
    json_body = {"Content-Type": "application/json"}
    # The route exists and answers with product data to a caller holding the service credential...
    direct = send(
        shop.cluster.url("catalog"), "POST", b"/internal/products/lookup", {**json_body, **SERVICE_TOKEN}, lookup
    )
    assert direct.status == 200 and product_id in direct.body.decode()
    # ...and nothing through the gateway reaches it, the credential included.
    for target in (
        b"/api/products/../../internal/products/lookup",
        b"/api/products/%2e%2e/%2e%2e/internal/products/lookup",
        b"/api/products/%2E%2E/%2E%2E/internal/products/lookup",
        b"/api/products/.%2e/%2E./internal/products/lookup",
        b"/api/products/..%2f..%2finternal/products/lookup",
        b"/api/products%2F..%2F..%2Finternal%2Fproducts%2Flookup",
        b"/api/products/..%5c..%5cinternal/products/lookup",
        b"/api/products/%252e%252e/%252e%252e/internal/products/lookup",
        b"/api/products/..;/..;/internal/products/lookup",
        b"/api/categories/../../internal/products/lookup",
    ):
        assert_refused(send(shop.gateway, "POST", target, {**json_body, **SERVICE_TOKEN}, lookup))
    for target in (b"/internal/products/lookup", b"/internal/products/lookup/"):
        response = send(shop.gateway, "POST", target, {**json_body, **SERVICE_TOKEN}, lookup)
        assert response.status == 404 and product_id not in response.body.decode()


def test_no_service_metrics_or_readiness_through_the_gateway(shop: Shop) -> None:
    for target in (
        b"/api/products/../../metrics",
        b"/api/orders/../../metrics",
        b"/api/auth/../../readyz",
        b"/api/payments/%2e%2e/%2e%2e/metrics",
        b"/api/orders/%2E%2E/%2E%2E/readyz",
    ):
        assert_refused(send(shop.gateway, "GET", target))
    metrics = send(shop.gateway, "GET", b"/metrics", SERVICE_TOKEN)
    assert metrics.status == 404 and b"shop_http_requests_total" not in metrics.body
    ready = send(shop.gateway, "GET", b"/readyz")
    assert ready.status == 200 and ready.json() == {"status": "ok"}  # the gateway's own, status only


def test_the_webhook_prefix_reaches_no_other_route(shop: Shop, customer_token: str) -> None:
    headers = {"Authorization": f"Bearer {customer_token}", "Content-Type": "application/json"}
    body = json.dumps({"order_id": str(uuid.uuid4()), "provider": "stripe"}).encode()
    for target in (
        b"/api/payments/webhooks/../../payments",
        b"/api/payments/webhooks/%2e%2e/%2e%2e/payments",
        b"/api/payments/webhooks/stripe/..%2F..%2F..%2Fpayments",
        b"/api/payments/bkash/callback/../../../payments",
    ):
        assert_refused(send(shop.gateway, "POST", target, headers, body))
    # What the prefix is for still works: an unsigned webhook reaches payments, which refuses it.
    unsigned = send(shop.gateway, "POST", b"/api/payments/webhooks/stripe", {"Content-Type": "application/json"}, b"{}")
    assert unsigned.status == 400 and unsigned.headers["content-type"] == "application/problem+json"


@pytest.fixture(scope="module")
def strict_gateway(shop: Shop) -> Iterator[str]:
    """A second gateway in front of the same shop's services, with limits small enough to reach in a
    test (the shop's own gateway keeps the defaults the other tests rely on)."""
    port = free_port()
    env = {
        **shop.cluster.environment(),
        "SHOP_RATE_LIMIT_ANON_BURST": "3",
        "SHOP_RATE_LIMIT_ANON_RATE": "0.001",
        "SHOP_RATE_LIMIT_CALLBACK_BURST": "4",
        "SHOP_RATE_LIMIT_CALLBACK_RATE": "0.001",
        "SHOP_RATE_LIMIT_MAX_KEYS": "3",
    }
    env.pop("SHOP_TRUSTED_PROXIES", None)
    process = subprocess.Popen(
        [sys.executable, "-m", "gateway", "--host", "127.0.0.1", "--port", str(port)],
        cwd=REPO_ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if local_http.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert process.poll() is None and time.monotonic() < deadline, "the second gateway did not start"
            time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        process.wait(15)


def test_a_spoofed_forwarded_for_does_not_change_the_rate_limit_key(strict_gateway: str) -> None:
    statuses = [
        send(strict_gateway, "GET", b"/api/products", {"X-Forwarded-For": f"203.0.113.{i}"}, source="127.0.2.1").status
        for i in range(6)
    ]
    assert statuses == [200, 200, 200, 429, 429, 429]


def test_provider_callbacks_have_their_own_limit_per_address(strict_gateway: str) -> None:
    me = "127.0.2.2"
    assert [send(strict_gateway, "GET", b"/api/products", source=me).status for _ in range(4)] == [200, 200, 200, 429]
    webhook = [
        send(strict_gateway, "POST", b"/api/payments/webhooks/stripe", {}, b"{}", source=me).status for _ in range(5)
    ]
    assert webhook == [400, 400, 400, 400, 429]  # payments refuses the unsigned body; then the callback limit


def test_a_full_bucket_table_evicts_the_least_recently_used_key(strict_gateway: str) -> None:
    # The table holds three addresses; each address has three tokens and gets no new one in this test.
    def spend(client: str, times: int) -> list[int]:
        return [send(strict_gateway, "GET", b"/api/products", source=client).status for _ in range(times)]

    a, b, c, d = "127.0.3.1", "127.0.3.2", "127.0.3.3", "127.0.3.4"
    assert spend(a, 4) == [200, 200, 200, 429]
    assert spend(b, 4) == [200, 200, 200, 429]
    assert spend(c, 1) == [200]  # the table is full (some of the callback tests' addresses went already)
    assert spend(a, 1) == [429]  # a is the most recently used now, b the least
    assert spend(d, 1) == [200]  # a new address evicts b's bucket, and only b's
    assert spend(a, 1) == [429]  # a table cleared at once would have let a through again
    assert spend(b, 1) == [200]  # b starts over with a full bucket
