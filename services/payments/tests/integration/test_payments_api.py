"""The public API's rules: ownership, input validation, payable orders, idempotency; the provider log."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import event, text

from shopkit.testing import local_http

pytestmark = pytest.mark.integration


def _post(shop, user, body, **headers):  # type: ignore[no-untyped-def]
    return local_http.post(f"{shop.url}/api/payments", json=body, headers={**shop.headers(user), **headers}, timeout=15)


def test_another_users_payment_is_404_and_admin_sees_it(shop) -> None:  # type: ignore[no-untyped-def]
    owner, stranger = uuid.uuid4(), uuid.uuid4()
    order_id = shop.place_order(owner)
    payment = _post(shop, owner, {"order_id": str(order_id), "provider": "stripe"}).json()

    assert local_http.get(f"{shop.url}/api/payments/{payment['id']}", headers=shop.headers(stranger)).status_code == 404
    assert _post(shop, stranger, {"order_id": str(order_id), "provider": "stripe"}).status_code == 404
    listed = local_http.get(
        f"{shop.url}/api/payments", params={"order_id": str(order_id)}, headers=shop.headers(stranger)
    )
    assert listed.json()["items"] == []
    admin = shop.headers(uuid.uuid4(), "admin")
    assert local_http.get(f"{shop.url}/api/payments/{payment['id']}", headers=admin).json()["id"] == payment["id"]
    mine = local_http.get(f"{shop.url}/api/payments", params={"order_id": str(order_id)}, headers=shop.headers(owner))
    assert [p["id"] for p in mine.json()["items"]] == [payment["id"]] and mine.json()["total"] == 1


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"order_id": "not-a-uuid", "provider": "stripe"}, 422),
        ({"order_id": str(uuid.uuid4()), "provider": "paypal"}, 422),
        ({"order_id": str(uuid.uuid4()), "provider": "stripe", "amount": "1.00"}, 422),
        ({"provider": "stripe"}, 422),
    ],
)
def test_bad_input_is_a_problem(shop, body, status) -> None:  # type: ignore[no-untyped-def]
    answer = _post(shop, uuid.uuid4(), body)
    assert answer.status_code == status
    assert answer.headers["content-type"].startswith("application/problem+json")


def test_unknown_order_is_409_with_a_retry_hint_and_no_token_is_401(shop) -> None:  # type: ignore[no-untyped-def]
    answer = _post(shop, uuid.uuid4(), {"order_id": str(uuid.uuid4()), "provider": "stripe"})
    assert answer.status_code == 409 and "retry" in answer.json()["detail"]
    anonymous = local_http.post(f"{shop.url}/api/payments", json={"order_id": str(uuid.uuid4()), "provider": "stripe"})
    assert anonymous.status_code == 401
    garbage = local_http.get(f"{shop.url}/api/payments/bkash/callback", params={"paymentID": "x", "status": "maybe"})
    assert garbage.status_code == 422
    unknown = local_http.get(
        f"{shop.url}/api/payments/bkash/callback", params={"paymentID": "TR0011NOPE", "status": "success"}
    )
    assert unknown.status_code == 404


def test_bkash_needs_bdt_and_idempotency_key_returns_the_first_payment(shop) -> None:  # type: ignore[no-untyped-def]
    user = uuid.uuid4()
    usd_order = shop.place_order(user, currency="USD")
    assert _post(shop, user, {"order_id": str(usd_order), "provider": "bkash"}).status_code == 422

    first = _post(shop, user, {"order_id": str(usd_order), "provider": "stripe"}, **{"Idempotency-Key": "k-1"})
    again = _post(shop, user, {"order_id": str(usd_order), "provider": "stripe"}, **{"Idempotency-Key": "k-1"})
    assert first.status_code == 201 and again.status_code == 200
    assert again.json()["id"] == first.json()["id"] and first.json()["currency"] == "USD"


def test_a_new_idempotency_key_costs_no_read_and_a_key_used_for_another_order_is_refused(shop) -> None:  # type: ignore[no-untyped-def]
    """The key is looked up only when the request cannot open a payment: here a key used before for
    another order (the key's unique index refuses the new payment). A replay is answered by the
    order's open payment, which carries the key."""
    user = uuid.uuid4()
    order, other_order = shop.place_order(user), shop.place_order(user)
    statements: list[str] = []

    def record(_conn, _cursor, statement, _parameters, _context, _many) -> None:  # type: ignore[no-untyped-def]
        statements.append(statement)

    def reads_by_key() -> int:
        found = [s for s in statements if s.lstrip().upper().startswith("SELECT") and "idempotency_key =" in s]
        statements.clear()
        return len(found)

    engine = shop.app.state.runtime.db.engine
    event.listen(engine, "before_cursor_execute", record)
    try:
        body = {"order_id": str(order), "provider": "stripe"}
        first = _post(shop, user, body, **{"Idempotency-Key": "fresh-1"})
        first_reads = reads_by_key()
        replay = _post(shop, user, body, **{"Idempotency-Key": "fresh-1"})
        replay_reads = reads_by_key()
        reuse = _post(
            shop, user, {"order_id": str(other_order), "provider": "stripe"}, **{"Idempotency-Key": "fresh-1"}
        )
        reuse_reads = reads_by_key()
    finally:
        event.remove(engine, "before_cursor_execute", record)

    assert first.status_code == 201 and first_reads == 0
    assert replay.status_code == 200 and replay.json()["id"] == first.json()["id"] and replay_reads == 0
    assert reuse.status_code == 409 and "another payment request" in reuse.json()["detail"] and reuse_reads >= 1


def test_provider_log_holds_every_exchange_without_secrets(shop) -> None:  # type: ignore[no-untyped-def]
    user = uuid.uuid4()
    order_id = shop.place_order(user)
    stripe_payment = _post(shop, user, {"order_id": str(order_id), "provider": "stripe"}).json()
    shop.pay_stripe(stripe_payment["redirect_url"])
    other_order = shop.place_order(user)
    bkash_payment = _post(shop, user, {"order_id": str(other_order), "provider": "bkash"}).json()
    shop.pay_bkash(bkash_payment["redirect_url"])
    shop.wait_for(lambda: len(shop.outbox("PaymentSucceeded")) == 2)

    operations = {(row.direction, row.provider, row.operation) for row in shop.rows("SELECT * FROM provider_log")}
    assert {
        ("outbound", "stripe", "POST /v1/checkout/sessions"),
        ("inbound", "stripe", "webhook"),
        ("outbound", "bkash", "token/grant"),
        ("outbound", "bkash", "create"),
        ("inbound", "bkash", "callback"),
        ("outbound", "bkash", "execute"),
    } <= operations
    bkash_rows = shop.rows("SELECT operation FROM provider_log WHERE payment_id = :p", p=bkash_payment["id"])
    assert {"create", "execute"} <= {row.operation for row in bkash_rows}

    with shop.app.state.runtime.db.engine.connect() as connection:
        dump = "\n".join(str(tuple(row)) for row in connection.execute(text("SELECT * FROM provider_log")))
    secrets = [*shop.settings.provider_secrets().values(), *shop.app.state.payments.providers.bkash.known_secrets()]
    assert len(secrets) == 8
    for secret in secrets:
        assert secret not in dump
    assert "[REDACTED]" in dump
