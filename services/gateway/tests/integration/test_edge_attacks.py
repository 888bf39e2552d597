"""The gateway as an attacker meets it: raw request targets over a socket, in front of stub services
that answer 200 on every path, their internal and operations routes included, so a request that got
past the gateway would show as a 200 and as a request the stub saw."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from gateway.app import asgi_upstreams, create_app
from gateway.settings import GatewaySettings
from gateway.upstream import HttpUpstream
from shopkit.testing import ServerThread, free_port

pytestmark = pytest.mark.integration

Raw = Callable[..., Any]
INTERNAL_LOOKUP = b"/internal/products/lookup"


@dataclass
class Seen:
    service: str
    method: str
    path: str
    raw_path: bytes
    query: bytes
    headers: dict[str, str]


def stub_service(name: str, seen: list[Seen]) -> FastAPI:
    app = FastAPI()

    @app.api_route("/{rest:path}", methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
    async def anything(request: Request) -> JSONResponse:
        scope = request.scope
        seen.append(
            Seen(name, scope["method"], scope["path"], scope["raw_path"], scope["query_string"], dict(request.headers))
        )
        return JSONResponse({"service": name, "path": scope["path"], "internal": not scope["path"].startswith("/api/")})

    return app


@pytest.fixture(scope="module")
def seen_by_stubs() -> list[Seen]:
    return []


@pytest.fixture
def seen(seen_by_stubs: list[Seen]) -> list[Seen]:
    """What the stub services saw during this test."""
    seen_by_stubs.clear()
    return seen_by_stubs


@pytest.fixture(scope="module")
def stubs(seen_by_stubs: list[Seen]) -> Iterator[dict[str, str]]:
    names = ("auth", "catalog", "orders", "payments")
    servers = {name: ServerThread(stub_service(name, seen_by_stubs)) for name in names}
    for server in servers.values():
        server.__enter__()
    yield {name: server.url for name, server in servers.items()}
    for server in servers.values():
        server.__exit__(None, None, None)


def gateway_app(var_dir: Path, stubs: dict[str, str], readiness: dict[str, Any] | None, **overrides: Any) -> object:
    settings = GatewaySettings(var_dir=var_dir, upstream_timeout=5.0, **overrides)
    upstreams = {name: HttpUpstream(name, url, timeout=5.0) for name, url in stubs.items()}
    return create_app(settings, upstreams=upstreams, readiness=readiness)


@pytest.fixture
def start(tmp_path: Path, stubs: dict[str, str], serve_gateway: Callable[[object], str]) -> Callable[..., str]:
    """A gateway of this test's own settings."""

    def _start(readiness: dict[str, Any] | None = None, **overrides: Any) -> str:
        return serve_gateway(gateway_app(tmp_path, stubs, readiness, **overrides))

    return _start


@pytest.fixture(scope="module")
def gateway(
    tmp_path_factory: pytest.TempPathFactory, stubs: dict[str, str], serve_module_gateway: Callable[[object], str]
) -> str:
    """A gateway of the default settings, shared by the tests that never come near its limits."""
    return serve_module_gateway(gateway_app(tmp_path_factory.mktemp("gateway"), stubs, None))


def assert_problem(response: Any, status: int) -> None:
    assert response.status == status, (response.status, response.body)
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["status"] == status


ATTACKS = [
    b"/api/products/../../internal/products/lookup",
    b"/api/products/%2e%2e/%2e%2e/internal/products/lookup",
    b"/api/products/%2E%2E/%2E%2E/internal/products/lookup",
    b"/api/products/.%2e/.%2E/internal/products/lookup",
    b"/api/products/%2e./%2E./internal/products/lookup",
    b"/api/products/../../metrics",
    b"/api/orders/../../metrics",
    b"/api/auth/../../readyz",
    b"/api/payments/../../internal/payments",
    b"/api/products/./../../internal/products/lookup",
    b"/api/products%2f..%2f..%2finternal%2fproducts%2flookup",
    b"/api/products/..%2F..%2Finternal/products/lookup",
    b"/api/products/..%5c..%5cinternal/products/lookup",
    b"/api/products/%252e%252e/%252e%252e/internal/products/lookup",
    b"/api/products/..;/..;/internal/products/lookup",
    b"/api/products//../internal/products/lookup",
    b"/api/products/%c0%ae%c0%ae/%c0%ae%c0%ae/internal/products/lookup",
    b"/api/products/x%00",
    b"/api/products/x%0d%0aX-Shop-Service-Token:%20x",
]


@pytest.mark.parametrize("target", ATTACKS)
def test_dot_segments_and_their_encodings_are_refused_before_routing(
    gateway: str, raw: Raw, seen: list[Seen], target: bytes
) -> None:
    for method in ("GET", "POST"):
        response = raw(gateway, method, target, {"Content-Type": "application/json"}, b'{"ids": []}')
        assert_problem(response, 400)
        assert "path" in response.json()["detail"]
    assert seen == []


@pytest.mark.parametrize(
    "target",
    [b"/api/products/..\\..\\internal/products/lookup", b"/api/products/\x7f", b"/api/products/\xc3\xa9"],
)
def test_raw_bytes_no_path_may_hold_are_refused(gateway: str, raw: Raw, seen: list[Seen], target: bytes) -> None:
    # Some of these the HTTP parser refuses itself (a plain 400); none reaches a service.
    assert raw(gateway, "GET", target).status == 400
    assert seen == []


def test_no_internal_or_operations_route_answers_from_outside(gateway: str, raw: Raw, seen: list[Seen]) -> None:
    service_token = {"X-Shop-Service-Token": "dev-internal-token-not-for-production"}
    for target in (INTERNAL_LOOKUP, b"/internal", b"/metrics", b"/metrics/", b"/api", b"/", b"/sandbox/stripe"):
        for method in ("GET", "POST"):
            assert_problem(raw(gateway, method, target, service_token), 404)
    ready = raw(gateway, "GET", b"/readyz")
    assert ready.status == 200 and ready.json() == {"status": "ok"}
    assert raw(gateway, "GET", b"/healthz").json() == {"status": "ok"}
    assert raw(gateway, "GET", b"/docs").status == 200
    assert not [s for s in seen if not s.path.startswith("/api/")]  # only the merged OpenAPI's own reads


def test_the_path_is_forwarded_exactly_as_sent_and_decided_on_as_decoded(
    gateway: str, raw: Raw, seen: list[Seen]
) -> None:
    response = raw(gateway, "GET", b"/api/product%73/%41bc?q=%2e%2e&page=1")
    assert response.status == 200 and response.json()["service"] == "catalog"
    (request,) = seen
    assert request.raw_path == b"/api/product%73/%41bc"
    assert request.path == "/api/products/Abc"
    assert request.query == b"q=%2e%2e&page=1"


def test_queries_with_control_characters_are_refused(gateway: str, raw: Raw, seen: list[Seen]) -> None:
    assert_problem(raw(gateway, "GET", b"/api/products?q=%00"), 400)
    assert_problem(raw(gateway, "GET", b"/api/products?q=a%0d%0ab"), 400)
    assert seen == []


def test_the_service_credential_and_client_claims_are_never_forwarded(gateway: str, raw: Raw, seen: list[Seen]) -> None:
    response = raw(
        gateway,
        "GET",
        b"/api/orders/mine",
        {
            "X-Shop-Service-Token": "dev-internal-token-not-for-production",
            "X-Forwarded-For": "6.6.6.6",
            "X-Forwarded-Host": "evil.example",
            "Forwarded": "for=6.6.6.6",
            "X-Real-IP": "6.6.6.6",
        },
        source="127.0.0.21",
    )
    assert response.status == 200
    (request,) = seen
    assert "x-shop-service-token" not in request.headers
    assert "forwarded" not in request.headers and "x-real-ip" not in request.headers
    assert request.headers["x-forwarded-for"] == "127.0.0.21"
    assert request.headers["x-forwarded-host"] != "evil.example"


def test_the_webhook_prefix_reaches_no_other_route(
    gateway: str, raw: Raw, seen: list[Seen], mint: Callable[..., str]
) -> None:
    customer = {"Authorization": f"Bearer {mint()}", "Content-Type": "application/json"}
    for target in (
        b"/api/payments/webhooks/../../payments",
        b"/api/payments/webhooks/%2e%2e/%2e%2e/payments",
        b"/api/payments/webhooks/stripe/..%2f..%2f..%2fpayments",
        b"/api/payments/webhooks/%252e%252e/%252e%252e/payments",
        b"/api/payments/bkash/callback/../../../payments",
    ):
        assert_problem(raw(gateway, "POST", target, customer, b'{"order_id": "x", "provider": "stripe"}'), 400)
    assert seen == []
    assert raw(gateway, "POST", b"/api/payments/webhooks/stripe", {}, b"{}").status == 200
    assert [s.path for s in seen] == ["/api/payments/webhooks/stripe"]


def test_provider_callbacks_have_their_own_per_address_limit(start: Callable[..., str], raw: Raw) -> None:
    gateway = start(
        rate_limit_anon_burst=2,
        rate_limit_anon_rate=0.001,
        rate_limit_callback_burst=4,
        rate_limit_callback_rate=0.001,
    )
    me = "127.0.0.31"
    assert [raw(gateway, "GET", b"/api/products", source=me).status for _ in range(3)] == [200, 200, 429]
    callbacks = [
        raw(gateway, "POST", b"/api/payments/webhooks/stripe", {}, b"{}", source=me).status,
        raw(gateway, "GET", b"/api/payments/bkash/callback?paymentID=p&status=success", source=me).status,
        raw(gateway, "POST", b"/api/payments/webhooks/stripe", {}, b"{}", source=me).status,
        raw(gateway, "POST", b"/api/payments/webhooks/stripe", {}, b"{}", source=me).status,
        raw(gateway, "POST", b"/api/payments/webhooks/stripe", {}, b"{}", source=me).status,
    ]
    assert callbacks == [200, 200, 200, 200, 429]  # not unlimited: four, then the callback bucket is empty
    assert raw(gateway, "POST", b"/api/payments/webhooks/stripe", {}, b"{}", source="127.0.0.32").status == 200
    # Only the callback's own path is exempt from the anonymous limit, not what merely starts like it.
    assert raw(gateway, "GET", b"/api/payments/bkash/callbackX", source=me).status == 429
    limited = raw(gateway, "POST", b"/api/payments/webhooks/stripe", {}, b"{}", source=me)
    assert_problem(limited, 429)
    assert int(limited.headers["retry-after"]) >= 1


def test_a_spoofed_forwarded_for_does_not_change_the_key(start: Callable[..., str], raw: Raw, seen: list[Seen]) -> None:
    gateway = start(rate_limit_anon_burst=2, rate_limit_anon_rate=0.001)
    statuses = [
        raw(gateway, "GET", b"/api/products", {"X-Forwarded-For": f"203.0.113.{i}"}, source="127.0.0.41").status
        for i in range(5)
    ]
    assert statuses == [200, 200, 429, 429, 429]
    assert {s.headers["x-forwarded-for"] for s in seen} == {"127.0.0.41"}
    assert raw(gateway, "GET", b"/api/products", source="127.0.0.42").status == 200


def test_with_trusted_proxies_the_nth_address_from_the_right_is_the_key(
    start: Callable[..., str], raw: Raw, seen: list[Seen]
) -> None:
    gateway = start(rate_limit_anon_burst=2, rate_limit_anon_rate=0.001, trusted_proxies=1)

    def via_proxy(forwarded_for: str) -> int:
        headers = {"X-Forwarded-For": forwarded_for}
        return int(raw(gateway, "GET", b"/api/products", headers, source="127.0.0.51").status)

    assert [via_proxy("6.6.6.6, 198.51.100.7"), via_proxy("7.7.7.7, 198.51.100.7")] == [200, 200]
    assert via_proxy("8.8.8.8, 198.51.100.7") == 429  # what the client wrote left of its address is no new key
    assert via_proxy("6.6.6.6, 198.51.100.8") == 200  # another client behind the same proxy
    assert [s.headers["x-forwarded-for"] for s in seen] == ["198.51.100.7", "198.51.100.7", "198.51.100.8"]

    two_proxies = start(rate_limit_anon_burst=2, rate_limit_anon_rate=0.001, trusted_proxies=2)
    seen.clear()
    raw(two_proxies, "GET", b"/api/products", {"X-Forwarded-For": "6.6.6.6, 192.0.2.1, 10.1.1.1"}, source="127.0.0.52")
    assert seen[0].headers["x-forwarded-for"] == "192.0.2.1"


def test_a_full_bucket_table_evicts_the_least_recently_used_key(start: Callable[..., str], raw: Raw) -> None:
    gateway = start(rate_limit_anon_burst=1, rate_limit_anon_rate=0.001, rate_limit_max_keys=3)

    def get(client: str) -> int:
        return int(raw(gateway, "GET", b"/api/products", source=client).status)

    a, b, c, d = "127.0.1.1", "127.0.1.2", "127.0.1.3", "127.0.1.4"
    assert [get(a), get(a), get(b), get(b), get(c)] == [200, 429, 200, 429, 200]  # table full: a, b, c
    assert get(a) == 429  # a is now the most recently used; b the least
    assert get(d) == 200  # a new caller: b's bucket goes, and only b's
    assert get(a) == 429  # still limited (a table that was cleared would let a through)
    assert get(b) == 200  # b was evicted, so it starts again with a full bucket (and c's goes)
    assert get(c) == 200  # c was the least recently used then (and d's goes now)
    assert get(a) == 429  # a, in use all along, was never evicted


def test_readiness_says_status_only(start: Callable[..., str], raw: Raw) -> None:
    async def database() -> str | None:
        raise ConnectionError('connection to server at "db.internal" (10.0.0.5), port 5432 failed: role "shop_x"')

    gateway = start(readiness={"catalog.database": database})
    ready = raw(gateway, "GET", b"/readyz")
    assert ready.status == 503
    assert ready.json() == {"status": "unavailable"}


async def test_the_in_process_mode_decides_and_forwards_the_same_way(tmp_path: Path) -> None:
    seen: list[Seen] = []
    apps = {name: stub_service(name, seen) for name in ("auth", "catalog", "orders", "payments")}
    app = create_app(GatewaySettings(var_dir=tmp_path), upstreams=asgi_upstreams(apps))

    async def call(raw_path: bytes, query: bytes = b"") -> tuple[int, bytes]:
        from urllib.parse import unquote

        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "GET",
            "scheme": "http",
            "path": unquote(raw_path.decode("ascii")),
            "raw_path": raw_path,
            "query_string": query,
            "root_path": "",
            "headers": [(b"host", b"shop"), (b"x-forwarded-for", b"6.6.6.6")],
            "client": ("127.0.0.61", 50000),
            "server": ("127.0.0.1", 8000),
        }
        sent: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        await asyncio.wait_for(app(scope, receive, send), 10)
        return sent[0]["status"], b"".join(m.get("body", b"") for m in sent[1:])

    for attack in ATTACKS:
        assert (await call(attack))[0] == 400, attack
    assert seen == []
    status, _ = await call(b"/api/product%73/%41bc", b"page=1")
    assert status == 200
    (request,) = seen
    assert (request.path, request.raw_path, request.query) == ("/api/products/Abc", b"/api/product%73/%41bc", b"page=1")
    assert request.headers["x-forwarded-for"] == "127.0.0.61"


def test_metrics_live_on_the_internal_port_only(start: Callable[..., str], raw: Raw) -> None:
    internal_port = free_port()
    gateway = start(gateway_internal_port=internal_port)
    assert raw(gateway, "GET", b"/api/products").status == 200
    internal = f"http://127.0.0.1:{internal_port}"
    scraped = raw(internal, "GET", b"/metrics")
    assert scraped.status == 200
    assert b'shop_http_requests_total{method="GET",route="unmatched",service="gateway",status="200"}' in scraped.body
    assert b'shop_rate_limit_backend{backend="local"} 1.0' in scraped.body
    assert raw(internal, "GET", b"/readyz").json() == {"status": "ok"}
    assert_problem(raw(gateway, "GET", b"/metrics"), 404)


def test_the_boolean_forwarded_for_setting_is_refused_not_ignored(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="SHOP_TRUSTED_PROXIES"):
        GatewaySettings(var_dir=tmp_path, trust_forwarded_for=True)
