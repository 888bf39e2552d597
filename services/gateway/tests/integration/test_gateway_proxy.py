"""The gateway in front of real HTTP upstreams (and in-process ones), as a client meets it."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse

from gateway.app import asgi_upstreams, create_app
from gateway.settings import GatewaySettings
from gateway.upstream import HttpUpstream
from shopkit.openapi import operation_id
from shopkit.problems import PROBLEM_JSON, install_problem_handlers
from shopkit.testing import ServerThread, free_port

pytestmark = pytest.mark.integration


def echo_service(name: str) -> FastAPI:
    app = FastAPI(title=name, generate_unique_id_function=operation_id(name))
    install_problem_handlers(app)

    # One documented operation per route and method, as the services have (operation ids stay unique).
    @app.get(f"/api/{name}/echo", include_in_schema=False)
    @app.post(f"/api/{name}/echo")
    async def echo(request: Request) -> JSONResponse:
        body = await request.body()
        return JSONResponse(
            {"service": name, "body": body.decode(), "query": str(request.url.query), "headers": dict(request.headers)},
            headers={"Connection": "keep-alive", "X-Upstream": name},
        )

    @app.get(f"/api/{name}/slow")
    async def slow() -> dict[str, str]:
        await asyncio.sleep(3)
        return {"late": "yes"}

    @app.get(f"/api/{name}/stream")
    async def stream() -> StreamingResponse:
        async def chunks() -> object:
            for i in range(5):
                yield f"chunk{i}\n".encode()

        return StreamingResponse(chunks(), media_type="text/plain")  # type: ignore[arg-type]

    return app


@pytest.fixture
def settings(tmp_path: Path) -> GatewaySettings:
    return GatewaySettings(
        var_dir=tmp_path,
        upstream_timeout=1.0,
        rate_limit_user_burst=3,
        rate_limit_user_rate=1,
        rate_limit_anon_burst=5,
        rate_limit_anon_rate=1,
    )


@pytest.fixture
def upstream_servers() -> Iterator[dict[str, ServerThread]]:
    names = {"auth": "auth", "catalog": "products", "orders": "orders", "payments": "payments"}
    servers = {svc: ServerThread(echo_service(area)) for svc, area in names.items()}
    for server in servers.values():
        server.__enter__()
    yield servers
    for server in servers.values():
        server.__exit__(None, None, None)


@pytest.fixture
def gateway(settings: GatewaySettings, upstream_servers: dict[str, ServerThread]) -> Iterator[str]:
    upstreams = {
        name: HttpUpstream(name, s.url, timeout=settings.upstream_timeout) for name, s in upstream_servers.items()
    }
    with ServerThread(create_app(settings, upstreams=upstreams)) as server:
        yield server.url


def test_routes_each_prefix_to_its_service_with_path_query_and_body(gateway: str) -> None:
    with httpx.Client(base_url=gateway) as client:
        for area, service in (
            ("auth", "auth"),
            ("products", "products"),
            ("orders", "orders"),
            ("payments", "payments"),
        ):
            r = client.post(
                f"/api/{area}/echo?x=1&y=2", content=b'{"a": 1}', headers={"Content-Type": "application/json"}
            )
            assert r.status_code == 200
            assert r.json()["service"] == service
            assert r.json()["query"] == "x=1&y=2"
            assert r.json()["body"] == '{"a": 1}'


def test_hop_by_hop_headers_dropped_and_forwarded_headers_set(gateway: str) -> None:
    with httpx.Client(base_url=gateway) as client:
        r = client.get(
            "/api/orders/echo", headers={"Proxy-Authorization": "secret", "TE": "trailers", "X-Custom": "kept"}
        )
        # The gateway has the whole body before it forwards: a service is never asked for 100 Continue.
        posted = client.post("/api/orders/echo", content=b"{}", headers={"Expect": "100-continue"})
    seen = r.json()["headers"]
    assert "proxy-authorization" not in seen and "te" not in seen
    assert posted.status_code == 200 and "expect" not in posted.json()["headers"]
    assert posted.json()["body"] == "{}"
    assert seen["x-custom"] == "kept"
    assert seen["x-forwarded-for"] == "127.0.0.1"
    assert seen["x-forwarded-proto"] == "http"
    assert r.headers["x-upstream"] == "orders"
    assert "keep-alive" not in r.headers.get("connection", "")


def test_request_id_generated_passed_upstream_and_echoed(gateway: str) -> None:
    with httpx.Client(base_url=gateway) as client:
        r = client.get("/api/orders/echo")
        assert r.headers["x-request-id"] == r.json()["headers"]["x-request-id"]
        mine = client.get("/api/orders/echo", headers={"X-Request-ID": "abc-123"})
        assert mine.headers["x-request-id"] == "abc-123"
        assert mine.json()["headers"]["x-request-id"] == "abc-123"
        assert client.get("/healthz").headers["x-request-id"]


def test_bad_tokens_refused_before_the_upstream(gateway: str, mint: Callable[..., str]) -> None:
    with httpx.Client(base_url=gateway) as client:
        for header in ("Bearer not-a-jwt", "Basic abc", "Bearer " + mint(iss="someone-else"), "Bearer " + mint(exp=1)):
            r = client.get("/api/orders/echo", headers={"Authorization": header})
            assert r.status_code == 401, header
            assert r.headers["content-type"] == "application/problem+json"
            assert "service" not in r.json()
        good = client.get("/api/orders/echo", headers={"Authorization": "Bearer " + mint()})
        assert good.status_code == 200


def test_rate_limit_per_user_not_per_address(gateway: str, mint: Callable[..., str]) -> None:
    alice, bob = mint(), mint()
    with httpx.Client(base_url=gateway) as client:
        statuses = [
            client.get("/api/products/echo", headers={"Authorization": f"Bearer {alice}"}).status_code for _ in range(5)
        ]
        assert statuses[:3] == [200, 200, 200]
        assert statuses[-1] == 429
        limited = client.get("/api/products/echo", headers={"Authorization": f"Bearer {alice}"})
        assert limited.status_code == 429
        assert int(limited.headers["retry-after"]) >= 1
        assert limited.json()["status"] == 429
        # Bob shares alice's address but not her bucket.
        assert client.get("/api/products/echo", headers={"Authorization": f"Bearer {bob}"}).status_code == 200


def test_anonymous_calls_limited_per_address_and_webhooks_never(gateway: str) -> None:
    with httpx.Client(base_url=gateway) as client:
        statuses = [client.get("/api/products/echo").status_code for _ in range(8)]
        assert statuses.count(429) >= 2
        assert client.get("/api/payments/webhooks/stripe").status_code != 429


def test_down_upstream_is_502_and_slow_upstream_is_504(
    settings: GatewaySettings, upstream_servers: dict[str, ServerThread]
) -> None:
    upstreams = {name: HttpUpstream(name, s.url, timeout=1.0) for name, s in upstream_servers.items()}
    upstreams["orders"] = HttpUpstream("orders", f"http://127.0.0.1:{free_port()}", timeout=1.0)
    with (
        ServerThread(create_app(settings, upstreams=upstreams)) as server,
        httpx.Client(base_url=server.url, timeout=10) as client,
    ):
        down = client.get("/api/orders/echo")
        assert down.status_code == 502
        assert down.headers["content-type"] == "application/problem+json"
        slow = client.get("/api/products/slow")
        assert slow.status_code == 504
        assert slow.json()["detail"]
        # A request that asks the service to wait (a long poll) is given that much longer.
        waited = client.get("/api/products/slow", headers={"Prefer": "wait=5"})
        assert waited.status_code == 200


def test_streamed_response_and_oversized_body(gateway: str) -> None:
    with httpx.Client(base_url=gateway) as client:
        r = client.get("/api/orders/stream")
        assert r.text == "".join(f"chunk{i}\n" for i in range(5))
        huge = client.post("/api/orders/echo", content=b"x" * 1_100_000)
        assert huge.status_code == 413
        assert huge.headers["content-type"] == "application/problem+json"


def test_unknown_and_internal_paths_are_404_problems(gateway: str) -> None:
    with httpx.Client(base_url=gateway) as client:
        for path in ("/api/nothing", "/internal/products/lookup", "/nope"):
            r = client.get(path)
            assert r.status_code == 404, path
            assert r.headers["content-type"] == "application/problem+json"


def test_merged_openapi_and_docs(gateway: str) -> None:
    with httpx.Client(base_url=gateway) as client:
        spec = client.get("/openapi.json").json()
        assert {"/api/auth/echo", "/api/products/echo", "/api/orders/echo", "/api/payments/echo"} <= set(spec["paths"])
        operations = [(method, op) for item in spec["paths"].values() for method, op in item.items()]
        ids = [op["operationId"] for _, op in operations]
        assert len(ids) == len(set(ids)) and "products_echo" in ids
        # What the gateway itself answers, on every operation, as problem+json (413 where a body is read).
        for method, operation in operations:
            for status in ("400", "401", "429", "502", "504", *(["413"] if method == "post" else [])):
                content = operation["responses"][status]["content"]
                assert content == {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/ProblemDetails"}}}
            assert operation["responses"]["429"]["headers"]["Retry-After"]["required"] is True
        assert spec["components"]["schemas"]["ProblemDetails"]["required"] == ["title", "status", "detail"]
        assert [tag["name"] for tag in spec["tags"]] == ["auth", "catalog", "orders", "payments"]
        assert "swagger" in client.get("/docs").text.lower()


async def test_in_process_upstreams(settings: GatewaySettings) -> None:
    apps = {
        "auth": echo_service("auth"),
        "catalog": echo_service("products"),
        "orders": echo_service("orders"),
        "payments": echo_service("payments"),
    }
    app = create_app(settings, upstreams=asgi_upstreams(apps))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://shop") as client:  # type: ignore[arg-type]
        r = await client.post("/api/orders/echo", content=b"hello")
        assert r.status_code == 200
        assert r.json() == {**r.json(), "service": "orders", "body": "hello"}
        assert r.headers["x-request-id"]
