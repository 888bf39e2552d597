"""The public routes: access rules, bad input, catalog failures, idempotency, paging."""

from __future__ import annotations

import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event

from contracts import new_envelope
from orders import api as orders_api
from orders.app import create_app
from shopkit.testing import ServerThread, free_port, local_http

pytestmark = pytest.mark.integration

PROBLEM = "application/problem+json"


@pytest.fixture
def nothing_written(db_rows):
    def _check() -> None:
        counts = db_rows(
            "SELECT (SELECT count(*) FROM orders.orders) AS orders, (SELECT count(*) FROM orders.order_items) AS items,"
            " (SELECT count(*) FROM orders.order_events) AS events, (SELECT count(*) FROM orders.outbox) AS outbox"
        )[0]
        assert tuple(counts) == (0, 0, 0, 0)

    return _check


def one_item(product_id: uuid.UUID, quantity: int = 1) -> dict:
    return {"items": [{"product_id": str(product_id), "quantity": quantity}]}


# --- access -----------------------------------------------------------------------------------------


def test_another_users_order_is_404_for_reading_and_cancelling(client, catalog, headers, db_rows):
    owner, stranger = uuid.uuid4(), uuid.uuid4()
    order = client.post("/api/orders", json=one_item(catalog.add("3.00")), headers=headers(owner)).json()

    for response in (
        client.get(f"/api/orders/{order['id']}", headers=headers(stranger)),
        client.post(f"/api/orders/{order['id']}/cancel", headers=headers(stranger)),
        client.get(f"/api/orders/{uuid.uuid4()}", headers=headers(owner)),
    ):
        assert response.status_code == 404
        assert response.headers["content-type"] == PROBLEM
    assert db_rows("SELECT status FROM orders.orders")[0].status == "pending_payment"
    assert client.get("/api/orders", headers=headers(stranger)).json()["total"] == 0
    assert client.get(f"/api/orders/{order['id']}", headers=headers(uuid.uuid4(), "admin")).status_code == 200


def test_routes_need_a_valid_token(client, settings):
    order_id = uuid.uuid4()
    for method, path in (
        ("POST", "/api/orders"),
        ("GET", "/api/orders"),
        ("GET", f"/api/orders/{order_id}"),
        ("POST", f"/api/orders/{order_id}/cancel"),
    ):
        assert client.request(method, path).status_code == 401
        bad = client.request(method, path, headers={"Authorization": "Bearer not-a-token"})
        assert bad.status_code == 401
        assert bad.headers["content-type"] == PROBLEM


def test_owner_cancels_a_pending_order_once(client, catalog, headers, db_rows):
    owner = uuid.uuid4()
    order = client.post("/api/orders", json=one_item(catalog.add("3.00")), headers=headers(owner)).json()

    response = client.post(f"/api/orders/{order['id']}/cancel", headers=headers(owner))
    assert response.status_code == 200
    assert response.json()["status"] == "cancelled"
    assert [e["status"] for e in response.json()["timeline"]] == ["pending_payment", "cancelled"]
    again = client.post(f"/api/orders/{order['id']}/cancel", headers=headers(owner))
    assert again.status_code == 409
    assert again.headers["content-type"] == PROBLEM

    cancelled = db_rows("SELECT envelope FROM orders.outbox WHERE event_type = 'OrderCancelled'")
    assert [(c.envelope["data"]["order_id"], c.envelope["data"]["reason"]) for c in cancelled] == [
        (order["id"], "cancelled by the customer")
    ]


def test_one_order_read_in_one_statement_answers_as_the_listing_does(client, catalog, headers):
    """GET /api/orders/{id} is one statement on PostgreSQL (items and timeline as JSON); the listing reads
    them in three. Both answer the same order the same way, to the cent and the microsecond."""
    owner = uuid.uuid4()
    body = {
        "items": [
            {"product_id": str(catalog.add("3.10")), "quantity": 3},
            {"product_id": str(catalog.add("1999.99")), "quantity": 1},
        ]
    }
    order = client.post("/api/orders", json=body, headers=headers(owner)).json()
    client.post(f"/api/orders/{order['id']}/cancel", headers=headers(owner))

    one = client.get(f"/api/orders/{order['id']}", headers=headers(owner)).json()
    [listed] = client.get("/api/orders", headers=headers(owner)).json()["items"]

    assert one == listed
    assert [(i["unit_price"], i["quantity"], i["line_total"]) for i in one["items"]] == [
        ("3.10", 3, "9.30"),
        ("1999.99", 1, "1999.99"),
    ]
    assert [e["status"] for e in one["timeline"]] == ["pending_payment", "cancelled"]


def test_admin_cannot_cancel_someone_elses_order(client, catalog, headers):
    order = client.post("/api/orders", json=one_item(catalog.add("3.00")), headers=headers(uuid.uuid4())).json()
    assert client.post(f"/api/orders/{order['id']}/cancel", headers=headers(uuid.uuid4(), "admin")).status_code == 403


# --- bad input --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"items": []},
        {"items": [{"product_id": "not-a-uuid", "quantity": 1}]},
        {"items": [{"product_id": str(uuid.uuid4()), "quantity": 0}]},
        {"items": [{"product_id": str(uuid.uuid4()), "quantity": 1001}]},
        {"items": [{"product_id": str(uuid.uuid4()), "quantity": "2"}]},
        {"items": [{"product_id": str(uuid.uuid4()), "quantity": 1.5}]},
        {"items": [{"product_id": str(uuid.uuid4()), "quantity": True}]},
        {"items": [{"product_id": str(uuid.uuid4()), "quantity": 1, "price": "0.01"}]},
        {"items": [{"product_id": str(uuid.uuid4()), "quantity": 1}], "user_id": str(uuid.uuid4())},
        {"items": [{"product_id": str(uuid.uuid4()), "quantity": 1}] * 101},
        {"items": "everything"},
        [],
    ],
)
def test_invalid_order_body_is_422_and_writes_nothing(client, headers, nothing_written, catalog, body):
    response = client.post("/api/orders", json=body, headers=headers(uuid.uuid4()))
    assert response.status_code == 422
    assert response.headers["content-type"] == PROBLEM
    assert catalog.calls == []
    nothing_written()


def test_malformed_json_and_bad_headers_are_4xx(client, headers, nothing_written):
    user = headers(uuid.uuid4())
    broken = client.post("/api/orders", content=b'{"items": [', headers={**user, "Content-Type": "application/json"})
    assert broken.status_code == 422
    long_key = {**user, "Idempotency-Key": "k" * 201}
    too_long_key = client.post("/api/orders", json=one_item(uuid.uuid4()), headers=long_key)
    assert too_long_key.status_code == 422
    nothing_written()


def test_bad_read_parameters_are_422(client, headers):
    admin = headers(uuid.uuid4(), "admin")
    for path, params in (
        ("/api/orders", {"page": 0}),
        ("/api/orders", {"page_size": 0}),
        ("/api/orders", {"page_size": 101}),
        ("/api/orders", {"status": "lost"}),
        ("/api/orders", {"user_id": "me"}),
        ("/api/orders/not-a-uuid", {}),
    ):
        response = client.get(path, params=params, headers=admin)
        assert response.status_code == 422, (path, params)
        assert response.headers["content-type"] == PROBLEM


def test_cancel_with_a_bad_id_is_422(client, headers, nothing_written):
    assert client.post("/api/orders/not-a-uuid/cancel", headers=headers(uuid.uuid4())).status_code == 422
    nothing_written()


def test_unknown_or_archived_product_is_422(client, catalog, headers, nothing_written):
    archived = catalog.add("5.00", active=False)
    known = catalog.add("5.00")
    for missing in (uuid.uuid4(), archived):
        body = {"items": [{"product_id": str(known), "quantity": 1}, {"product_id": str(missing), "quantity": 1}]}
        response = client.post("/api/orders", json=body, headers=headers(uuid.uuid4()))
        assert response.status_code == 422
        assert response.json()["product_ids"] == [str(missing)]
    nothing_written()


def test_more_than_stock_is_409_with_shortages(client, catalog, headers, nothing_written):
    product = catalog.add("5.00", stock=2)
    response = client.post("/api/orders", json=one_item(product, 3), headers=headers(uuid.uuid4()))
    assert response.status_code == 409
    assert response.json()["shortages"] == [{"product_id": str(product), "requested": 3, "available": 2}]
    # Repeated lines count together against the stock.
    twice = {"items": [{"product_id": str(product), "quantity": 2}, {"product_id": str(product), "quantity": 1}]}
    assert client.post("/api/orders", json=twice, headers=headers(uuid.uuid4())).status_code == 409
    nothing_written()


def test_products_in_two_currencies_are_422(client, catalog, headers, nothing_written):
    bdt, usd = catalog.add("5.00"), catalog.add("5.00", currency="USD")
    body = {"items": [{"product_id": str(bdt), "quantity": 1}, {"product_id": str(usd), "quantity": 1}]}
    assert client.post("/api/orders", json=body, headers=headers(uuid.uuid4())).status_code == 422
    nothing_written()


def test_one_catalog_round_trip_for_many_lines(client, catalog, headers):
    products = [catalog.add("1.00") for _ in range(100)]
    body = {"items": [{"product_id": str(p), "quantity": 1} for p in products]}
    response = client.post("/api/orders", json=body, headers=headers(uuid.uuid4()))
    assert response.status_code == 201
    assert response.json()["total_amount"] == "100.00"
    assert len(catalog.calls) == 1 and len(catalog.calls[0]) == 100


# --- catalog failures -------------------------------------------------------------------------------


def test_catalog_down_is_503_and_writes_nothing(settings, headers, nothing_written):
    down = settings.model_copy(update={"catalog_url": f"http://127.0.0.1:{free_port()}"})
    with TestClient(create_app(down)) as client:
        response = client.post("/api/orders", json=one_item(uuid.uuid4()), headers=headers(uuid.uuid4()))
    assert response.status_code == 503
    assert response.headers["content-type"] == PROBLEM
    nothing_written()


def test_catalog_too_slow_is_503_and_writes_nothing(settings, catalog, headers, nothing_written):
    catalog.delay = 2.0
    product = catalog.add("5.00")
    slow = settings.model_copy(update={"upstream_timeout": 0.3})
    with ServerThread(catalog.app) as catalog_server:
        slow = slow.model_copy(update={"catalog_url": catalog_server.url})
        with TestClient(create_app(slow)) as client:
            response = client.post("/api/orders", json=one_item(product), headers=headers(uuid.uuid4()))
    assert response.status_code == 503
    nothing_written()


def test_catalog_error_answer_is_503(settings, headers, nothing_written):
    from fastapi import FastAPI

    broken = FastAPI()

    @broken.post("/internal/products/lookup")
    def fail() -> dict:
        return {"unexpected": True}

    with TestClient(create_app(settings, catalog_app=broken)) as client:
        response = client.post("/api/orders", json=one_item(uuid.uuid4()), headers=headers(uuid.uuid4()))
    assert response.status_code == 503
    nothing_written()


# --- idempotency ------------------------------------------------------------------------------------


def test_same_idempotency_key_returns_the_first_order(client, catalog, headers, db_rows):
    user = uuid.uuid4()
    product = catalog.add("5.00", stock=1)
    key = {"Idempotency-Key": "checkout-1"}
    first = client.post("/api/orders", json=one_item(product), headers={**headers(user), **key})
    catalog.products[product].stock = 0  # a replay must not depend on the catalog any more
    second = client.post("/api/orders", json=one_item(product), headers={**headers(user), **key})
    other_user = client.post("/api/orders", json=one_item(product), headers={**headers(uuid.uuid4()), **key})

    assert first.status_code == 201 and second.status_code in (200, 201)
    assert second.json()["id"] == first.json()["id"]
    assert other_user.status_code == 409  # the key belongs to one user; the other hits the empty stock
    assert db_rows("SELECT count(*) AS n FROM orders.orders")[0].n == 1
    assert db_rows("SELECT count(*) AS n FROM orders.outbox WHERE event_type = 'OrderPlaced'")[0].n == 1


def test_a_new_idempotency_key_costs_no_read_and_a_replay_reads_it_once(client, catalog, headers):
    """The key is looked up only when the request cannot be placed: by the key's unique index on a
    replay, or by a refusal (the stock gone since)."""
    user = uuid.uuid4()
    product = catalog.add("5.00", stock=1)
    client.post("/api/orders", json=one_item(product), headers=headers(uuid.uuid4()))  # the view learns it
    statements: list[str] = []

    def record(_conn, _cursor, statement, _parameters, _context, _many) -> None:  # type: ignore[no-untyped-def]
        statements.append(statement)

    engine = client.app.state.runtime.db.engine
    event.listen(engine, "before_cursor_execute", record)
    try:
        key = {**headers(user), "Idempotency-Key": "fresh-1"}
        first = client.post("/api/orders", json=one_item(product), headers=key)
        placing = list(statements)
        statements.clear()
        replay = client.post("/api/orders", json=one_item(product), headers=key)
    finally:
        event.remove(engine, "before_cursor_execute", record)

    def reads_by_key(seen: list[str]) -> list[str]:
        return [s for s in seen if s.lstrip().upper().startswith("SELECT") and "idempotency_key =" in s]

    assert first.status_code == 201 and replay.json()["id"] == first.json()["id"]
    assert reads_by_key(placing) == []
    assert len(reads_by_key(statements)) == 1


def test_racing_requests_with_one_key_create_one_order(settings, catalog, headers, db_rows):
    user = uuid.uuid4()
    product = catalog.add("5.00", stock=100)
    request_headers = {**headers(user), "Idempotency-Key": "race-1"}
    with ServerThread(create_app(settings, catalog_app=catalog.app)) as server:

        def post(_: int) -> httpx.Response:
            return local_http.post(
                f"{server.url}/api/orders", json=one_item(product), headers=request_headers, timeout=20
            )

        with ThreadPoolExecutor(max_workers=8) as pool:
            responses = list(pool.map(post, range(8)))

    assert {r.status_code for r in responses} <= {200, 201}
    assert len({r.json()["id"] for r in responses}) == 1
    assert db_rows("SELECT count(*) AS n FROM orders.orders")[0].n == 1
    assert db_rows("SELECT count(*) AS n FROM orders.order_items")[0].n == 1
    assert db_rows("SELECT count(*) AS n FROM orders.outbox WHERE event_type = 'OrderPlaced'")[0].n == 1


# --- listing ----------------------------------------------------------------------------------------


def test_listing_is_own_orders_newest_first_and_paged(client, catalog, headers):
    alice, bob = uuid.uuid4(), uuid.uuid4()
    product = catalog.add("1.00", stock=1000)
    alices = [client.post("/api/orders", json=one_item(product, n), headers=headers(alice)).json() for n in range(1, 6)]
    client.post("/api/orders", json=one_item(product), headers=headers(bob))
    client.post(f"/api/orders/{alices[0]['id']}/cancel", headers=headers(alice))

    first = client.get("/api/orders", params={"page_size": 2}, headers=headers(alice)).json()
    third = client.get("/api/orders", params={"page_size": 2, "page": 3}, headers=headers(alice)).json()
    assert (first["total"], first["page"], first["page_size"]) == (5, 1, 2)
    assert [o["id"] for o in first["items"]] == [alices[4]["id"], alices[3]["id"]]
    assert [o["id"] for o in third["items"]] == [alices[0]["id"]]
    assert third["items"][0]["items"][0]["quantity"] == 1 and third["items"][0]["timeline"][-1]["status"] == "cancelled"

    cancelled = client.get("/api/orders", params={"status": "cancelled"}, headers=headers(alice)).json()
    assert [o["id"] for o in cancelled["items"]] == [alices[0]["id"]]
    # A customer's user_id filter never widens the view beyond their own orders.
    assert client.get("/api/orders", params={"user_id": str(bob)}, headers=headers(alice)).json()["total"] == 0


def test_admin_lists_everything_with_filters(client, catalog, headers):
    alice, bob, admin = uuid.uuid4(), uuid.uuid4(), headers(uuid.uuid4(), "admin")
    product = catalog.add("1.00", stock=1000)
    for user in (alice, alice, bob):
        client.post("/api/orders", json=one_item(product), headers=headers(user))

    assert client.get("/api/orders", headers=admin).json()["total"] == 3
    by_user = client.get("/api/orders", params={"user_id": str(alice)}, headers=admin).json()
    assert by_user["total"] == 2 and {o["user_id"] for o in by_user["items"]} == {str(alice)}
    pending = client.get("/api/orders", params={"status": "pending_payment", "user_id": str(bob)}, headers=admin)
    assert pending.json()["total"] == 1
    assert client.get("/api/orders", params={"status": "paid"}, headers=admin).json()["total"] == 0


# --- waiting for a change (ETag, If-None-Match, Prefer: wait) ----------------------------------------


def test_an_order_read_again_unchanged_is_304_and_changed_is_200(client, catalog, headers):
    owner = uuid.uuid4()
    order = client.post("/api/orders", json=one_item(catalog.add("3.00")), headers=headers(owner)).json()
    first = client.get(f"/api/orders/{order['id']}", headers=headers(owner))
    etag = first.headers["etag"]

    unchanged = client.get(f"/api/orders/{order['id']}", headers={**headers(owner), "If-None-Match": etag})
    assert unchanged.status_code == 304 and unchanged.content == b"" and unchanged.headers["etag"] == etag
    client.post(f"/api/orders/{order['id']}/cancel", headers=headers(owner))
    changed = client.get(f"/api/orders/{order['id']}", headers={**headers(owner), "If-None-Match": etag})
    assert changed.status_code == 200 and changed.json()["status"] == "cancelled"
    assert changed.headers["etag"] != etag
    stranger = client.get(f"/api/orders/{order['id']}", headers={**headers(uuid.uuid4()), "If-None-Match": etag})
    assert stranger.status_code == 404  # an ETag tells nothing about someone else's order


def _placed_with_etag(url: str, catalog: Any, owner: dict[str, str]) -> tuple[dict[str, Any], str]:
    """An order placed by the owner of these headers, and the ETag its first read answers."""
    order = local_http.post(url, json=one_item(catalog.add("3.00")), headers=owner).json()
    return order, local_http.get(f"{url}/{order['id']}", headers=owner).headers["etag"]


def test_a_long_poll_answers_when_the_order_changes_not_when_its_wait_ends(settings, catalog, headers, monkeypatch):
    # Re-reads 10 s apart: only the commit's wake-up can answer within the bounds below.
    monkeypatch.setattr(orders_api, "WAIT_RECHECK", 10.0)
    owner = uuid.uuid4()
    with ServerThread(create_app(settings, catalog_app=catalog.app)) as server:
        url = f"{server.url}/api/orders"
        order, etag = _placed_with_etag(url, catalog, headers(owner))
        waiting = {**headers(owner), "If-None-Match": etag, "Prefer": "wait=10"}

        with ThreadPoolExecutor(max_workers=1) as pool:
            began = time.monotonic()
            poll = pool.submit(local_http.get, f"{url}/{order['id']}", headers=waiting, timeout=20)
            time.sleep(0.3)
            assert not poll.done()  # it waits: nothing changed
            cancelled_at = time.monotonic()
            assert local_http.post(f"{url}/{order['id']}/cancel", headers=headers(owner)).status_code == 200
            answer = poll.result(timeout=15)
        woken_after = time.monotonic() - cancelled_at

        assert answer.status_code == 200 and answer.json()["status"] == "cancelled"
        assert answer.headers["preference-applied"] == "wait=10"
        # Woken by the cancel's commit, not by the next periodic re-read (10 s away).
        assert woken_after < 5.0
        assert time.monotonic() - began >= 0.3

        quiet_began = time.monotonic()
        etag = answer.headers["etag"]
        timed_out = local_http.get(
            f"{url}/{order['id']}", headers={**headers(owner), "If-None-Match": etag, "Prefer": "wait=1"}, timeout=20
        )
        assert timed_out.status_code == 304
        assert 1.0 <= time.monotonic() - quiet_began < 3.0


def test_an_order_changed_by_the_saga_wakes_its_long_poll(settings, catalog, headers, payment_succeeded, monkeypatch):
    monkeypatch.setattr(orders_api, "WAIT_RECHECK", 10.0)
    owner = uuid.uuid4()
    app = create_app(settings, catalog_app=catalog.app)
    with ServerThread(app) as server:
        url = f"{server.url}/api/orders"
        order, etag = _placed_with_etag(url, catalog, headers(owner))
        waiting = {**headers(owner), "If-None-Match": etag, "Prefer": "wait=10"}
        with ThreadPoolExecutor(max_workers=1) as pool:
            poll = pool.submit(local_http.get, f"{url}/{order['id']}", headers=waiting, timeout=20)
            time.sleep(0.3)
            paid_at = time.monotonic()
            app.state.runtime.dispatcher.handle(new_envelope(payment_succeeded(order), producer="payments"))
            answer = poll.result(timeout=15)
        assert answer.status_code == 200 and answer.json()["status"] == "paid"
        assert time.monotonic() - paid_at < 5.0  # the re-read is 10 s away


def test_waiting_long_polls_do_not_fill_the_in_flight_cap_and_past_their_own_cap_are_not_granted(
    settings, catalog, headers
):
    """A long poll waits with no thread and no database connection: counted in flight, a few customers
    waiting for their confirmations would turn everyone else away with 503s for up to 20 s. Past
    SHOP_MAX_WAITING waits at once, a wait is not granted: 304 at once, with Retry-After."""
    owner = uuid.uuid4()
    capped = settings.model_copy(update={"max_in_flight": 3, "max_waiting": 4})
    with ServerThread(create_app(capped, catalog_app=catalog.app)) as server:
        url = f"{server.url}/api/orders"
        order, etag = _placed_with_etag(url, catalog, headers(owner))
        waiting = {**headers(owner), "If-None-Match": etag, "Prefer": "wait=5"}
        with ThreadPoolExecutor(max_workers=4) as pool:
            polls = []
            for _ in range(4):  # one after the other: each reads (in flight) before it waits (aside)
                polls.append(pool.submit(local_http.get, f"{url}/{order['id']}", headers=waiting, timeout=20))
                time.sleep(0.3)
            assert not any(poll.done() for poll in polls)  # all four wait
            read = local_http.get(f"{url}/{order['id']}", headers=headers(owner))
            refused = local_http.get(f"{url}/{order['id']}", headers=waiting, timeout=20)
            assert not any(poll.done() for poll in polls)
            answers = [poll.result(timeout=15) for poll in polls]

    assert read.status_code == 200  # four waits in flight, the cap three: still admitted
    assert refused.status_code == 304 and refused.headers["retry-after"] == "1"
    assert "preference-applied" not in refused.headers
    assert [a.status_code for a in answers] == [304] * 4
    assert all(a.headers["preference-applied"] == "wait=5" for a in answers)
