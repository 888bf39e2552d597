"""tools/bench/load/checkout.js against a scripted fake of the gateway and the Stripe page: what it
counts as a clean refusal, a hang and a confirmation is what the bench and the overload test rely on."""

from __future__ import annotations

import asyncio
import shutil
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from aiohttp import web

from shopkit.testing import free_port
from tools.bench.drivers import checkout_config, run_checkouts
from tools.bench.stats import checkout_summary, unclean_answers

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed"),
]


class FakeShop:
    """Every placement is refused once (503 with Retry-After), every payment start once with a
    retryable 409; the pay form of the first session never answers; orders are confirmed 250 ms
    after placement."""

    def __init__(self) -> None:
        self.keys: set[str] = set()
        self.placed: dict[str, datetime] = {}
        self.hung = False
        self.app = web.Application()
        self.app.add_routes(
            [
                web.post("/api/orders", self.place),
                web.get("/api/orders/{id}", self.order),
                web.post("/api/payments", self.payment),
                web.get("/pay/{id}", self.page),
                web.post("/pay/{id}/pay", self.pay),
            ]
        )
        self.base = ""

    def first_time(self, request: web.Request) -> bool:
        key = request.path + request.headers["Idempotency-Key"]
        seen = key in self.keys
        self.keys.add(key)
        return not seen

    async def place(self, request: web.Request) -> web.Response:
        if self.first_time(request):
            return web.json_response({"status": 503}, status=503, headers={"Retry-After": "0.05"})
        order_id = str(uuid.uuid4())
        self.placed[order_id] = datetime.now(UTC)
        return web.json_response(
            {"id": order_id, "status": "pending_payment", "created_at": self.placed[order_id].isoformat()}, status=201
        )

    async def payment(self, request: web.Request) -> web.Response:
        if self.first_time(request):
            return web.json_response({"retryable": True}, status=409)
        return web.json_response({"redirect_url": f"{self.base}/pay/{uuid.uuid4().hex}"}, status=201)

    async def page(self, request: web.Request) -> web.Response:
        return web.Response(text="<form>")

    async def pay(self, request: web.Request) -> web.Response:
        if not self.hung:
            self.hung = True
            await asyncio.sleep(1.5)
        return web.Response(text="paid")

    async def order(self, request: web.Request) -> web.Response:
        created = self.placed[request.match_info["id"]]
        confirmed = created + timedelta(milliseconds=250)
        body = {
            "status": "confirmed",
            "created_at": created.isoformat(),
            "timeline": [{"status": "confirmed", "at": confirmed.isoformat()}],
        }
        return web.json_response(body)


@pytest.fixture
async def fake_shop() -> AsyncIterator[FakeShop]:
    shop = FakeShop()
    port = free_port()
    runner = web.AppRunner(shop.app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    shop.base = f"http://127.0.0.1:{port}"
    try:
        yield shop
    finally:
        await runner.cleanup()


def config(shop: FakeShop, **options: object) -> dict[str, object]:
    base = checkout_config(shop.base, ["t1", "t2"], ["p1", "p2", "p3"], mode="closed", duration=1.0)
    return base | {"timeout_ms": 1000, "payment_retry_ms": 20, "first_poll_ms": 50, **options}


async def test_a_closed_loop_counts_refusals_hangs_and_confirmations(fake_shop: FakeShop) -> None:
    result = await asyncio.to_thread(run_checkouts, config(fake_shop, clients=2))

    summary = checkout_summary(result)
    placed = result["responses"]["place"]["201"]
    assert placed >= 2
    assert result["responses"]["place"]["503"] == placed
    assert result["refusals"]["place"] == {"with_retry_after": placed}
    assert result["responses"]["payment"]["409"] == result["responses"]["payment"]["201"]
    assert unclean_answers(result["responses"]) == {"stripe_pay": {"timeout": 1}}
    assert result["abandoned"] == {"stripe": {"count": 1}}
    assert summary["confirmed"] == placed - 1
    assert summary["p50_ms"] == 250.0
    assert summary["all_terminal"] is False  # the order whose pay form hung was never confirmed


async def test_an_open_loop_arrives_at_its_rate_and_does_not_wait(fake_shop: FakeShop) -> None:
    result = await asyncio.to_thread(run_checkouts, config(fake_shop, mode="open", rate=20.0, duration_s=1.0))

    assert result["arrivals"] == 20
    assert len(result["orders"]) == 20
    assert "poll" not in result["responses"]
    assert result["paid"] == 19
