"""CPU the payments service spends per confirmed checkout, measured on its own process.

    python -m tools.bench.payments_cpu [--checkouts 300] [--concurrency 8] [--profile out.svg]

Starts the payments service and the Stripe sandbox as processes of their own (a fresh PostgreSQL
database, a private RabbitMQ namespace), then runs checkouts the way the saga drives payments:
OrderPlaced on the bus, `POST /api/payments` (a Checkout Session at the sandbox), the customer pays
on the sandbox's page, the signed webhook comes back, PaymentSucceeded leaves through the outbox.
A checkout counts once its PaymentSucceeded has reached the bus. The figure is the payments
process's user + system CPU over the measured checkouts, per checkout. `--profile` records the
measured phase with py-spy (GIL samples, idle threads included): an SVG flame graph, or collapsed
stacks when the file name ends in .txt.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path

import aiohttp

from contracts import Envelope, OrderLine, OrderPlaced, new_envelope
from shopkit.bus.rabbitmq import RabbitMQTransport
from shopkit.settings import KitSettings
from shopkit.testing import amqp_url, free_port, fresh_database, mint_access_token

REPO_ROOT = Path(__file__).resolve().parents[2]
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def wait_http(url: str, process: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{url}: the process exited with {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except urllib.error.HTTPError:
            return
        except OSError:
            time.sleep(0.2)
    raise TimeoutError(f"{url} did not answer")


class Checkouts:
    def __init__(self, payments: str, settings: KitSettings, transport: RabbitMQTransport) -> None:
        self.payments = payments
        self.settings = settings
        self.transport = transport
        self.succeeded: dict[uuid.UUID, asyncio.Future[None]] = {}
        self.not_yet_payable = 0

    async def on_events(self, envelopes: Sequence[Envelope]) -> list[BaseException | None]:
        for envelope in envelopes:
            waiter = self.succeeded.get(uuid.UUID(str(envelope.data["order_id"])))
            if waiter is not None and not waiter.done():
                waiter.set_result(None)
        return [None] * len(envelopes)

    async def one(self, http: aiohttp.ClientSession) -> None:
        user_id, order_id = uuid.uuid4(), uuid.uuid4()
        line = OrderLine(product_id=uuid.uuid4(), sku="SKU-1", name="Thing", unit_price=Decimal("625.00"), quantity=2)
        placed = OrderPlaced(
            order_id=order_id, user_id=user_id, currency="BDT", total_amount=Decimal("1250.00"), items=[line]
        )
        self.succeeded[order_id] = asyncio.get_running_loop().create_future()
        await self.transport.publish([new_envelope(placed, producer="orders", correlation_id=order_id)])
        token = mint_access_token(self.settings, user_id=user_id)
        headers = {"Authorization": f"Bearer {token}"}
        body = {"order_id": str(order_id), "provider": "stripe"}
        for _ in range(200):
            async with http.post(f"{self.payments}/api/payments", json=body, headers=headers) as answer:
                payment = await answer.json()
                if answer.status in (200, 201):
                    break
            self.not_yet_payable += 1
            await asyncio.sleep(0.02)  # OrderPlaced not consumed yet (409, retryable)
        else:
            raise RuntimeError(f"payment never created: {payment}")
        async with http.post(f"{payment['redirect_url']}/pay", data={"outcome": "success"}) as paid:
            if paid.status != 200:
                raise RuntimeError(f"the sandbox refused the payment: {paid.status}")
        try:
            await asyncio.wait_for(self.succeeded[order_id], timeout=60)
        finally:
            del self.succeeded[order_id]


async def run(total: int, concurrency: int, checkouts: Checkouts) -> float:
    started = time.perf_counter()
    queue: asyncio.Queue[int] = asyncio.Queue()
    for index in range(total):
        queue.put_nowait(index)
    async with aiohttp.ClientSession() as http:

        async def worker() -> None:
            while not queue.empty():
                queue.get_nowait()
                await checkouts.one(http)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - started


def bench(args: argparse.Namespace) -> None:
    work = Path(tempfile.mkdtemp(prefix="payments-bench-"))
    namespace = f"bench{uuid.uuid4().hex[:8]}."
    payments_port, stripe_port = free_port(), free_port()
    payments_url = f"http://127.0.0.1:{payments_port}"
    settings = KitSettings(var_dir=work)
    processes: list[subprocess.Popen[bytes]] = []
    with fresh_database(("payments",)) as database_url:
        env = {
            **os.environ,
            "SHOP_VAR_DIR": str(work),
            "SHOP_DATABASE_URL": database_url,
            "SHOP_AMQP_URL": amqp_url(),
            "SHOP_BUS_NAMESPACE": namespace,
            "SHOP_PUBLIC_URL": payments_url,
            "SHOP_SANDBOX_STRIPE_URL": f"http://127.0.0.1:{stripe_port}",
            "SHOP_SANDBOX_STRIPE_WEBHOOK_URL": f"{payments_url}/api/payments/webhooks/stripe",
            "SHOP_ENVIRONMENT": "test",
            "MALLOC_ARENA_MAX": "2",
        }
        mint_access_token(settings)  # creates the development key pair the service will load
        log = open(work / "processes.log", "ab")
        try:
            for module, port in (("sandbox.stripe_sandbox", stripe_port), ("payments", payments_port)):
                command = [sys.executable, "-m", module, "--port", str(port)]
                processes.append(subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=log, stderr=log))
            wait_http(f"http://127.0.0.1:{stripe_port}/", processes[0])
            wait_http(f"{payments_url}/readyz", processes[1])
            asyncio.run(measure(args, settings, payments_url, namespace, processes[1].pid))
        finally:
            for process in processes:
                process.terminate()
            for process in processes:
                process.wait(10)
            log.close()
    shutil.rmtree(work, ignore_errors=True)


def start_profiler(path: str, pid: int) -> subprocess.Popen[bytes]:
    command = ["py-spy", "record", "--gil", "--idle", "-o", path, "-p", str(pid)]
    if path.endswith(".txt"):
        command += ["--format", "raw"]  # collapsed stacks, one line per stack with its count
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


async def measure(args: argparse.Namespace, settings: KitSettings, payments: str, namespace: str, pid: int) -> None:
    transport = RabbitMQTransport(amqp_url(), exchange=f"{namespace}shop.events", prefetch=200)
    await transport.connect()
    try:
        checkouts = Checkouts(payments, settings, transport)
        await transport.subscribe(f"{namespace}bench", ["PaymentSucceeded"], checkouts.on_events)
        await run(args.warmup, args.concurrency, checkouts)
        profiler = start_profiler(args.profile, pid) if args.profile else None
        if profiler is not None:
            await asyncio.sleep(1.0)
        idle_from = cpu_seconds(pid)
        await asyncio.sleep(5.0)
        idle = (cpu_seconds(pid) - idle_from) / 5.0
        checkouts.not_yet_payable = 0
        before = cpu_seconds(pid)
        elapsed = await run(args.checkouts, args.concurrency, checkouts)
        spent = cpu_seconds(pid) - before
        if profiler is not None:
            profiler.send_signal(2)
            await asyncio.to_thread(profiler.wait, 30)
        print(
            f"{args.checkouts} checkouts at concurrency {args.concurrency} in {elapsed:.1f} s "
            f"({args.checkouts / elapsed:.1f}/s): payments CPU {1000 * spent / args.checkouts:.2f} ms per checkout "
            f"(idle: {1000 * idle:.1f} ms/s, {checkouts.not_yet_payable} early POSTs answered 409)"
        )
    finally:
        await transport.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkouts", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=40)
    parser.add_argument("--profile", default=None, help="py-spy profile of the measured phase (.svg or .txt)")
    bench(parser.parse_args())


if __name__ == "__main__":
    main()
