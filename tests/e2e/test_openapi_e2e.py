"""The API as client developers meet it: the gateway's merged OpenAPI document of a running
all-in-one shop (`make run`), checked by schemathesis with every check, and a client generated from
it with openapi-python-client that does a whole checkout through the Stripe sandbox."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from shopkit.testing import free_port
from tools.supervisor import REPO_ROOT

pytestmark = pytest.mark.e2e

BIN = Path(sys.executable).parent
ADMIN_EMAIL, ADMIN_PASSWORD = "openapi-admin@example.com", "openapi-admin-password"
SCHEMATHESIS_CONFIG = Path(__file__).parent / "openapi" / "schemathesis.toml"
# Examples per operation in the fuzzing phase (the coverage and stateful phases come on top): about
# 30 s idle, about a minute when the two cores are busy (30 examples: 38 s idle).
EXAMPLES = int(os.environ.get("SHOP_SCHEMATHESIS_EXAMPLES", "20"))
READY_WITHIN = 90.0


@dataclass
class EmbeddedShop:
    base: str
    log: Path


def _wait_ready(base: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + READY_WITHIN
    while time.monotonic() < deadline:
        assert process.poll() is None, log.read_text()[-3000:]
        try:
            if httpx.get(f"{base}/readyz", timeout=2).json().get("status") == "ok":
                return
        except (httpx.HTTPError, ValueError):
            pass
        time.sleep(0.3)
    pytest.fail(f"the all-in-one shop was not ready within {READY_WITHIN} s:\n{log.read_text()[-3000:]}")


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedShop]:
    """`make run`'s shop, its rate limits and login lockouts lifted: a fuzzer sends hundreds of
    requests a second from one address, and logs in with wrong passwords on purpose."""
    folder = tmp_path_factory.mktemp("openapi-shop")
    port = free_port()
    env = {
        **os.environ,
        "SHOP_VAR_DIR": str(folder / "var"),
        "SHOP_ENVIRONMENT": "test",
        "SHOP_ADMIN_EMAIL": ADMIN_EMAIL,
        "SHOP_ADMIN_PASSWORD": ADMIN_PASSWORD,
        "SHOP_RATE_LIMIT_ENABLED": "false",
        "SHOP_LOGIN_MAX_FAILURES": "1000000",
        "SHOP_LOGIN_SLOWDOWN_STEP": "0",
        "SHOP_ACCESS_LOG": "false",
        "MALLOC_ARENA_MAX": "2",
    }
    for name in ("SHOP_DATABASE_URL", "SHOP_AMQP_URL", "STRIPE_SECRET_KEY", "BKASH_APP_KEY", "SHOP_PUBLIC_URL"):
        env.pop(name, None)
    log = folder / "allinone.log"
    with log.open("ab") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "allinone", "--port", str(port)],
            cwd=REPO_ROOT,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(base, process, log)
        yield EmbeddedShop(base, log)
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _token(base: str, email: str, password: str) -> str:
    answer = httpx.post(f"{base}/api/auth/login", json={"email": email, "password": password}, timeout=30)
    assert answer.status_code == 200, answer.text
    return str(answer.json()["access_token"])


def _customer_token(base: str) -> str:
    email, password = f"fuzz-{uuid.uuid4().hex[:8]}@example.com", "customer-password-1"
    answer = httpx.post(
        f"{base}/api/auth/register", json={"email": email, "password": password, "full_name": "Fuzz"}, timeout=30
    )
    assert answer.status_code == 201, answer.text
    return _token(base, email, password)


def _resources(shop: EmbeddedShop, admin: str, customer: str) -> dict[str, str]:
    """A product, the customer's order of it and its Stripe payment: ids that exist for the fuzzer."""

    def call(token: str, path: str, body: dict[str, Any], status: int) -> Any:
        answer = httpx.post(f"{shop.base}{path}", json=body, headers={"Authorization": f"Bearer {token}"}, timeout=30)
        assert answer.status_code == status, answer.text
        return answer.json()

    product = call(admin, "/api/products", {"sku": "FUZZ-1", "name": "Fuzzed", "price": "10.00", "stock": 100}, 201)
    order = call(customer, "/api/orders", {"items": [{"product_id": product["id"], "quantity": 1}]}, 201)
    payment = call(customer, "/api/payments", {"order_id": order["id"], "provider": "stripe"}, 201)
    return {"SHOP_ST_PRODUCT_ID": product["id"], "SHOP_ST_ORDER_ID": order["id"], "SHOP_ST_PAYMENT_ID": payment["id"]}


def test_schemathesis_finds_no_failure_of_any_kind(shop: EmbeddedShop, tmp_path: Path) -> None:
    """Every check over the merged document: each answer's status, content type, headers and body as
    documented, valid requests accepted and invalid ones refused, 405 with Allow, no 5xx. The
    customer's routes run with a customer's token, the rest with an admin's."""
    admin, customer = _token(shop.base, ADMIN_EMAIL, ADMIN_PASSWORD), _customer_token(shop.base)
    env = {
        **os.environ,
        "SHOP_ST_ADMIN_TOKEN": admin,
        "SHOP_ST_CUSTOMER_TOKEN": customer,
        **_resources(shop, admin, customer),
    }
    report = tmp_path / "schemathesis.txt"
    with report.open("wb") as output:
        finished = subprocess.run(
            [
                str(BIN / "schemathesis"),
                "--no-color",
                "--config-file",
                str(SCHEMATHESIS_CONFIG),
                "run",
                f"{shop.base}/openapi.json",
                "--checks",
                "all",
                # DELETE archives a product, which an admin still reads (see schemathesis.toml).
                "--exclude-checks",
                "use_after_free",
                "--max-examples",
                str(EXAMPLES),
                # One worker: with several, Hypothesis describing its strategies parses source in
                # parallel threads, which Python 3.11's ast does not survive ("AST constructor
                # recursion depth mismatch", a runtime error of the run, not a finding).
                "--workers",
                "1",
                "--seed",
                os.environ.get("SHOP_SCHEMATHESIS_SEED", str(uuid.uuid4().int % 2**64)),
            ],
            env=env,
            cwd=tmp_path,  # its cache (.schemathesis/) stays out of the work tree
            stdout=output,
            stderr=subprocess.STDOUT,
            timeout=420,
            check=False,
        )
    text = report.read_text(errors="replace")
    assert finished.returncode == 0, text[-12000:]
    assert " passed" in text and "failures" not in text.lower().split("summary")[-1], text[-4000:]


def _generated_client(base: str, folder: Path) -> Any:
    document = folder / "openapi.json"
    document.write_text(json.dumps(httpx.get(f"{base}/openapi.json", timeout=30).json()))
    # Its post-generation hook formats the code with ruff, which it looks for on PATH.
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    generated = subprocess.run(
        [
            str(BIN / "openapi-python-client"),
            "generate",
            "--path",
            str(document),
            "--output-path",
            str(folder / "shop_client"),
            "--meta",
            "none",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=180,
        check=False,
    )
    output = generated.stdout + generated.stderr
    assert generated.returncode == 0, output
    assert "warning" not in output.lower(), output
    sys.path.insert(0, str(folder))
    return importlib.import_module("shop_client")


def test_a_generated_client_registers_logs_in_orders_and_pays(shop: EmbeddedShop, tmp_path: Path) -> None:
    client_package = _generated_client(shop.base, tmp_path)
    from shop_client import AuthenticatedClient, Client  # type: ignore[import-not-found]
    from shop_client.api.auth import auth_login, auth_register  # type: ignore[import-not-found]
    from shop_client.api.catalog import catalog_create_product  # type: ignore[import-not-found]
    from shop_client.api.orders import orders_get_order, orders_place_order  # type: ignore[import-not-found]
    from shop_client.api.payments import payments_create_payment  # type: ignore[import-not-found]
    from shop_client.models import (  # type: ignore[import-not-found]
        LoginRequest,
        OrderItemIn,
        OrderStatus,
        PaymentCreate,
        PaymentCreateProvider,
        PlaceOrderIn,
        ProductCreate,
        RegisterRequest,
    )

    assert client_package.__name__ == "shop_client"
    public = Client(base_url=shop.base, raise_on_unexpected_status=True)
    admin_tokens = auth_login.sync(client=public, body=LoginRequest(email=ADMIN_EMAIL, password=ADMIN_PASSWORD))
    admin = AuthenticatedClient(base_url=shop.base, token=admin_tokens.access_token)
    product = catalog_create_product.sync(
        client=admin,
        body=ProductCreate(sku=f"OAPI-{uuid.uuid4().hex[:8]}", name="Generated tea", price="120.50", stock=5),
    )

    email, password = f"client-{uuid.uuid4().hex[:8]}@example.com", "client-password-1"
    user = auth_register.sync(client=public, body=RegisterRequest(email=email, password=password, full_name="Gen"))
    assert user.email == email
    tokens = auth_login.sync(client=public, body=LoginRequest(email=email, password=password))
    customer = AuthenticatedClient(base_url=shop.base, token=tokens.access_token)

    order = orders_place_order.sync(
        client=customer, body=PlaceOrderIn(items=[OrderItemIn(product_id=product.id, quantity=2)])
    )
    assert order.total_amount == "241.00"
    deadline = time.monotonic() + 30
    while order.status != OrderStatus.PENDING_PAYMENT and time.monotonic() < deadline:
        time.sleep(0.2)
        order = orders_get_order.sync(client=customer, order_id=order.id)
    assert order.status == OrderStatus.PENDING_PAYMENT

    payment = payments_create_payment.sync(
        client=customer, body=PaymentCreate(order_id=order.id, provider=PaymentCreateProvider.STRIPE)
    )
    assert isinstance(payment.redirect_url, str)
    with httpx.Client(timeout=30, follow_redirects=True) as browser:
        assert browser.get(payment.redirect_url).status_code == 200
        assert browser.post(f"{payment.redirect_url}/pay", data={"outcome": "success"}).status_code < 400

    deadline = time.monotonic() + 60
    while order.status != OrderStatus.CONFIRMED and time.monotonic() < deadline:
        time.sleep(0.3)
        order = orders_get_order.sync(client=customer, order_id=order.id)
    assert order.status == OrderStatus.CONFIRMED
    assert [(item.product_id, item.quantity) for item in order.items] == [(product.id, 2)]


def test_an_undeclared_method_through_the_gateway_is_405_naming_the_declared_ones(shop: EmbeddedShop) -> None:
    answer = httpx.put(f"{shop.base}/api/products/{uuid.uuid4()}", timeout=30)
    assert answer.status_code == 405
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.headers["allow"] == "DELETE, GET, PATCH"
    assert answer.json()["status"] == 405


def test_the_merged_document_tells_each_route_s_errors_security_and_id(shop: EmbeddedShop) -> None:
    spec = httpx.get(f"{shop.base}/openapi.json", timeout=30).json()
    scheme = spec["components"]["securitySchemes"]["bearerAuth"]
    assert (scheme["type"], scheme["scheme"]) == ("http", "bearer")
    operations = {op["operationId"]: op for item in spec["paths"].values() for op in item.values()}
    assert len(operations) == sum(len(item) for item in spec["paths"].values())
    for operation_id, operation in operations.items():
        assert operation_id.startswith(f"{operation['tags'][0]}_"), operation_id
        for status, response in operation["responses"].items():
            if int(status) >= 400:
                assert list(response["content"]) == ["application/problem+json"], (operation_id, status)
        needs_token = operation.get("security") == [{"bearerAuth": []}]
        assert needs_token == (operation_id in TOKEN_REQUIRED), operation_id
    # A token changes what these answer (archived products for an admin): optional.
    assert operations["catalog_list_products"]["security"] == [{}, {"bearerAuth": []}]
    assert operations["catalog_get_product"]["security"] == [{}, {"bearerAuth": []}]
    # The service's own statuses and the gateway's, side by side.
    refund = set(operations["payments_refund_payment"]["responses"])
    assert {"202", "400", "401", "403", "404", "409", "413", "422", "429", "502", "503", "504"} == refund
    assert operations["payments_refund_payment"]["responses"]["503"]["headers"]["Retry-After"]["required"]
    docs = httpx.get(f"{shop.base}/docs", timeout=30).text
    assert "swagger-ui" in docs and "/openapi.json" in docs


# Routes that need a bearer token (and so show the lock and Authorize in /docs).
TOKEN_REQUIRED = {
    "auth_me",
    "catalog_create_product",
    "catalog_update_product",
    "catalog_archive_product",
    "catalog_adjust_stock",
    "catalog_list_stock_movements",
    "orders_place_order",
    "orders_list_orders",
    "orders_get_order",
    "orders_cancel_order",
    "orders_ship_order",
    "orders_deliver_order",
    "payments_create_payment",
    "payments_list_payments",
    "payments_get_payment",
    "payments_refund_payment",
}
