"""`make run` (the whole shop in one process: SQLite files, the in-process bus, the sandboxes) killed
with SIGKILL in the middle of a stream of checkouts and started again on the same var/ directory:
every order ends terminal, nobody is charged twice or keeps money for an order they did not get, and
units sold + units left = units received. The embedded mode keeps the distributed mode's guarantees
because its bus marks an outbox row sent only after the consumer's transaction has committed."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tools.shopclient import Http, login, register
from tools.supervisor import REPO_ROOT, free_base_port

from .helpers import settle_and_verify
from .test_crash_recovery_e2e import Stream, abandon_unpaid

pytestmark = pytest.mark.e2e

ADMIN_EMAIL, ADMIN_PASSWORD = "embedded-admin@example.com", "embedded-admin-password"
SHOPPERS = 5
STOCK = 1000
SETTLE_TIMEOUT = 150.0


class EmbeddedShop:
    def __init__(self, var_dir: Path, port: int) -> None:
        self.var_dir = var_dir
        self.port = port
        self.base = f"http://127.0.0.1:{port}"
        self.process: subprocess.Popen[bytes] | None = None
        self.log = var_dir.parent / "allinone.log"

    def start(self) -> None:
        env = {
            **os.environ,
            "SHOP_VAR_DIR": str(self.var_dir),
            "SHOP_ADMIN_EMAIL": ADMIN_EMAIL,
            "SHOP_ADMIN_PASSWORD": ADMIN_PASSWORD,
            "SHOP_ENVIRONMENT": "test",
            "SHOP_ORDER_PAYMENT_TIMEOUT": "30",
            "SHOP_ORDER_SWEEP_INTERVAL": "1",
            "SHOP_ORDER_STUCK_AFTER": "10",
            "SHOP_RETRY_DELAYS": "[0.5, 1, 2, 4]",
            "SHOP_SANDBOX_STRIPE_WEBHOOK_RETRY_DELAYS": "[1, 2, 3, 5, 5, 10, 10, 15]",
            "MALLOC_ARENA_MAX": "2",
        }
        for name in ("SHOP_DATABASE_URL", "SHOP_AMQP_URL", "STRIPE_SECRET_KEY", "BKASH_APP_KEY"):
            env.pop(name, None)
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "allinone", "--port", str(self.port)],
                cwd=REPO_ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.wait_ready()

    def wait_ready(self, within: float = 60.0) -> None:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            assert self.process is not None and self.process.poll() is None, self.log.read_text()[-3000:]
            try:
                with urllib.request.urlopen(f"{self.base}/readyz", timeout=2) as answer:
                    if json.load(answer).get("status") == "ok":
                        return
            except OSError:
                pass
            time.sleep(0.3)
        raise AssertionError(f"the all-in-one shop did not get ready:\n{self.log.read_text()[-3000:]}")

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()


@pytest.fixture
def embedded(tmp_path: Path) -> Iterator[EmbeddedShop]:
    shop = EmbeddedShop(tmp_path / "var", free_base_port())
    shop.start()
    try:
        yield shop
    finally:
        shop.stop()


async def test_make_run_killed_mid_stream_and_restarted_settles_every_order(embedded: EmbeddedShop) -> None:
    async with Http(retry_for=30) as http:
        admin = await login(http, embedded.base, ADMIN_EMAIL, ADMIN_PASSWORD)
        products = [(await admin.create_product(price="10.00", stock=STOCK))["id"] for _ in range(2)]
        customers = list(await asyncio.gather(*(register(http, embedded.base) for _ in range(SHOPPERS))))
        stream = Stream(http, customers, products)
        running = asyncio.create_task(stream.run())
        try:
            deadline = time.monotonic() + 60
            while len(stream.paid) < 8:
                assert time.monotonic() < deadline, f"too few checkouts before the kill: {stream.errors}"
                await asyncio.sleep(0.2)
            await asyncio.to_thread(embedded.kill)
            await asyncio.sleep(1)
            await asyncio.to_thread(embedded.start)
            paid_before = len(stream.paid)
            deadline = time.monotonic() + 60
            while len(stream.paid) < paid_before + 8:
                assert time.monotonic() < deadline, f"checkouts did not resume after the restart: {stream.errors}"
                await asyncio.sleep(0.2)
        finally:
            stream.stop.set()
            await running

        print(f"stream: {len(stream.orders)} orders, {len(stream.paid)} paid, trouble {dict(stream.errors)}")
        await abandon_unpaid(stream)
        finals = await settle_and_verify(
            http, stream.orders, admin, products, f"{embedded.base}/sandbox/stripe", within=SETTLE_TIMEOUT
        )
        assert sum(1 for o in finals.values() if o["status"] == "confirmed") >= 16
