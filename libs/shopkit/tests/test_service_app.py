"""A tiny app built with create_service_app (SQLite, in-process bus): problem+json for every
error, request ids on every response, body limits, health, readiness and metrics."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import pytest
from fastapi import Depends, FastAPI
from fastapi.testclient import TestClient
from pydantic import BaseModel, ConfigDict

from shopkit.auth import require_admin
from shopkit.bus.inprocess import InProcessTransport
from shopkit.lifecycle import ServiceRuntime
from shopkit.openapi import problems
from shopkit.outbox import DEAD, outbox
from shopkit.problems import Conflict, NotFound
from shopkit.settings import KitSettings
from shopkit.testing import ServerThread, local_http
from shopkit.webapp import create_service_app, get_uow

from .conftest import KIT_MIGRATIONS

pytestmark = pytest.mark.integration

PROBLEM = "application/problem+json"


class NewItem(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    quantity: int


def build_app(tmp_path: Path) -> tuple[FastAPI, ServiceRuntime]:
    settings = KitSettings(var_dir=tmp_path, database_url=None, amqp_url=None, max_body_bytes=1000, log_json=True)
    runtime = ServiceRuntime(
        "kitdemo", settings, migrations=KIT_MIGRATIONS, transport=InProcessTransport(retry_delays=[0.1])
    )
    app = create_service_app(runtime, title="kit demo")

    @app.post("/items", status_code=201)
    def create_item(item: NewItem, uow: object = Depends(get_uow)) -> dict[str, object]:
        if item.name == "taken":
            raise Conflict("that name is taken")
        return {"name": item.name, "quantity": item.quantity}

    @app.get("/items/{name}", responses=problems(404))
    def get_item(name: str, _admin: object = Depends(require_admin)) -> dict[str, str]:
        raise NotFound("no such item")

    @app.delete("/items/{name}", status_code=204)
    def delete_item(name: str, uow: object = Depends(get_uow)) -> None:
        return None

    @app.get("/boom")
    def boom() -> None:
        raise RuntimeError("secret internal detail")

    return app, runtime


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    app, _ = build_app(tmp_path)
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


def assert_problem(response: object, status: int) -> dict[str, object]:
    assert response.status_code == status, response.text  # type: ignore[attr-defined]
    assert response.headers["content-type"] == PROBLEM  # type: ignore[attr-defined]
    body: dict[str, object] = response.json()  # type: ignore[attr-defined]
    assert body["status"] == status
    assert body["title"] and body["detail"]
    assert response.headers.get("x-request-id")  # type: ignore[attr-defined]
    return body


def test_valid_request_and_domain_problem(client: TestClient) -> None:
    assert client.post("/items", json={"name": "pen", "quantity": 2}).status_code == 201
    assert_problem(client.post("/items", json={"name": "taken", "quantity": 1}), 409)


def test_malformed_json_is_a_422_problem(client: TestClient) -> None:
    body = assert_problem(
        client.post("/items", content=b'{"name": "pen", ', headers={"content-type": "application/json"}), 422
    )
    assert body["detail"] == "the request body is not valid JSON"


def test_invalid_and_unknown_fields_are_a_422_problem_with_errors(client: TestClient) -> None:
    body = assert_problem(client.post("/items", json={"name": "pen", "quantity": "many", "colour": "red"}), 422)
    locations = {tuple(error["loc"]) for error in body["errors"]}  # type: ignore[attr-defined]
    assert ("body", "quantity") in locations and ("body", "colour") in locations


def test_unknown_route_is_a_404_problem(client: TestClient) -> None:
    assert_problem(client.get("/nowhere"), 404)
    assert_problem(client.delete("/items"), 405)


def test_an_undeclared_method_is_405_with_allow_naming_every_declared_one(client: TestClient) -> None:
    # Two routes share the path: Starlette alone would name the first one's methods only.
    response = client.put("/items/pen")
    assert_problem(response, 405)
    assert response.headers["allow"] == "DELETE, GET"
    assert client.options("/items").headers["allow"] == "POST"


def test_the_document_tells_each_route_s_problems_security_and_operation_id(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    problem = {PROBLEM: {"schema": {"$ref": "#/components/schemas/ProblemDetails"}}}
    create = spec["paths"]["/items"]["post"]
    assert create["operationId"] == "kitdemo_create_item" and create["tags"] == ["kitdemo"]
    # A body (413, 422), a unit of work (503, with Retry-After), no token needed.
    assert set(create["responses"]) == {"201", "413", "422", "503"} and "security" not in create
    assert create["responses"]["503"]["headers"]["Retry-After"]["required"] is True
    item = spec["paths"]["/items/{name}"]
    # The admin's dependency: a bearer token, 401 and 403; the route's own 404; no database here, but a
    # service at capacity refuses any route (503).
    assert item["get"]["security"] == [{"bearerAuth": []}]
    assert set(item["get"]["responses"]) == {"200", "401", "403", "404", "422", "503"}
    assert "security" not in item["delete"] and set(item["delete"]["responses"]) == {"204", "422", "503"}
    for operation in (create, item["get"], item["delete"]):
        for status, response in operation["responses"].items():
            if int(status) >= 400:
                assert response["content"] == problem, (operation["operationId"], status)
    schemas = spec["components"]["schemas"]
    assert {"type", "title", "status", "detail", "errors"} <= set(schemas["ProblemDetails"]["properties"])
    assert "HTTPValidationError" not in schemas
    assert spec["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"


def test_exception_in_a_route_is_a_500_problem_without_traceback(client: TestClient) -> None:
    response = client.get("/boom", headers={"X-Request-ID": "req-boom-1"})
    body = assert_problem(response, 500)
    text = response.text
    assert "secret internal detail" not in text and "Traceback" not in text and "RuntimeError" not in text
    assert response.headers["x-request-id"] == "req-boom-1"
    assert set(body) == {"type", "title", "status", "detail"}


def test_body_over_the_limit_is_413_with_content_length(client: TestClient) -> None:
    payload = json.dumps({"name": "x" * 2000, "quantity": 1}).encode()
    assert_problem(client.post("/items", content=payload, headers={"content-type": "application/json"}), 413)


def test_body_over_the_limit_is_413_when_chunked(client: TestClient) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"name": "'
        for _ in range(20):
            yield b"x" * 100
        yield b'", "quantity": 1}'

    response = client.post("/items", content=chunks(), headers={"content-type": "application/json"})
    assert_problem(response, 413)


def test_every_response_has_a_request_id_and_an_incoming_one_is_echoed(client: TestClient) -> None:
    generated = client.get("/healthz").headers["x-request-id"]
    assert uuid.UUID(generated)
    assert client.get("/healthz", headers={"X-Request-ID": "abc-123"}).headers["x-request-id"] == "abc-123"
    assert client.get("/nowhere", headers={"X-Request-ID": "abc-404"}).headers["x-request-id"] == "abc-404"
    overlong = client.get("/healthz", headers={"X-Request-ID": "z" * 500}).headers["x-request-id"]
    assert overlong != "z" * 500


def test_health_and_readiness(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ok", "checks": {"database": "ok", "broker": "ok"}}


def test_metrics_export_outbox_backlog_and_dead_letters(tmp_path: Path) -> None:
    app, runtime = build_app(tmp_path)
    with TestClient(app) as test_client:
        with runtime.db.engine.begin() as connection:
            for _ in range(2):
                connection.execute(
                    outbox.insert().values(
                        id=uuid.uuid4(),
                        event_type="OrderCancelled",
                        envelope={},
                        status=DEAD,
                        attempts=10,
                        created_at=datetime.now(UTC),
                    )
                )
        text = test_client.get("/metrics").text
    assert 'shop_outbox_messages{service="kitdemo",status="dead"} 2.0' in text
    assert 'shop_outbox_messages{service="kitdemo",status="pending"} 0.0' in text
    assert 'shop_dead_letters{service="kitdemo"} 0.0' in text
    assert "shop_http_requests_total" in text


def test_past_its_capacity_a_service_answers_503_at_once_and_probes_still_pass(tmp_path: Path) -> None:
    settings = KitSettings(var_dir=tmp_path, database_url=None, amqp_url=None, max_in_flight=2, log_json=True)
    runtime = ServiceRuntime(
        "kitbusy", settings, migrations=KIT_MIGRATIONS, transport=InProcessTransport(retry_delays=[0.1])
    )
    app = create_service_app(runtime, title="kit busy", always_admitted=("/hooks/",))
    release = threading.Event()
    entered = threading.Semaphore(0)

    @app.get("/slow")
    def slow() -> dict[str, str]:
        entered.release()
        release.wait(10)
        return {"done": "yes"}

    @app.post("/hooks/provider")
    def hook() -> dict[str, str]:
        return {"taken": "yes"}

    with ServerThread(app) as server, ThreadPoolExecutor(2) as pool:
        holding = [pool.submit(local_http.get, f"{server.url}/slow") for _ in range(2)]
        assert entered.acquire(timeout=10) and entered.acquire(timeout=10)  # two requests in flight
        refused = local_http.get(f"{server.url}/slow", timeout=5)
        assert refused.status_code == 503
        assert refused.headers["retry-after"] == "1"
        assert refused.headers["content-type"] == PROBLEM
        assert local_http.get(f"{server.url}/healthz").status_code == 200
        assert local_http.post(f"{server.url}/hooks/provider").status_code == 200
        release.set()
        assert [future.result().status_code for future in holding] == [200, 200]
        assert local_http.get(f"{server.url}/slow").status_code == 200  # capacity is back
