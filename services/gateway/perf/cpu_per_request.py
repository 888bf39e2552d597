"""The gateway's CPU time per proxied request, against a trivial upstream.

    .venv/bin/python services/gateway/perf/cpu_per_request.py [--requests 20000] [--concurrency 16]

Starts a one-route aiohttp upstream and `python -m gateway` as their own processes, drives them with a
pooled aiohttp client (anonymous and token-bearing requests, the rate limiter on but never refusing),
and prints the gateway process's user+system CPU seconds divided by the requests it proxied. The CPU
of the client and of the upstream is not counted, so the figure holds on a busy machine, unlike a
throughput figure.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

REPO = Path(__file__).resolve().parents[3]
UPSTREAM = """
from aiohttp import web
async def ok(request):
    await request.read()
    return web.json_response({"items": [], "total": 0, "page": 1, "page_size": 20})
app = web.Application()
app.router.add_route("*", "/{tail:.*}", ok)
web.run_app(app, host="127.0.0.1", port=int(__import__("sys").argv[1]), print=None, access_log=None)
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def wait_up(url: str) -> None:
    deadline = time.monotonic() + 30.0
    async with aiohttp.ClientSession() as session:
        while True:
            try:
                async with session.get(url) as response:
                    if response.status < 500:
                        return
            except aiohttp.ClientError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(url)
            await asyncio.sleep(0.2)


async def drive(base: str, total: int, concurrency: int, token: str | None) -> None:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    remaining = total

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            async with session.get(f"{base}/api/products?page=1", headers=headers) as response:
                await response.read()
                if response.status != 200:
                    raise RuntimeError(f"unexpected {response.status}")

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    upstream_port, gateway_port = free_port(), free_port()
    with tempfile.TemporaryDirectory() as var:
        env = {
            **os.environ,
            "SHOP_VAR_DIR": var,
            "SHOP_LOG_LEVEL": "WARNING",
            "SHOP_RATE_LIMIT_ANON_RATE": "1000000",
            "SHOP_RATE_LIMIT_ANON_BURST": "1000000",
            "SHOP_RATE_LIMIT_USER_RATE": "1000000",
            "SHOP_RATE_LIMIT_USER_BURST": "1000000",
            **{f"SHOP_{s}_URL": f"http://127.0.0.1:{upstream_port}" for s in ("AUTH", "CATALOG", "ORDERS", "PAYMENTS")},
        }
        upstream = subprocess.Popen([sys.executable, "-c", UPSTREAM, str(upstream_port)], env=env)
        gateway = subprocess.Popen([sys.executable, "-m", "gateway", "--port", str(gateway_port)], env=env, cwd=REPO)
        try:
            base = f"http://127.0.0.1:{gateway_port}"
            asyncio.run(wait_up(f"{base}/healthz"))
            sys.path.insert(0, str(REPO / "libs"))
            from shopkit.settings import KitSettings
            from shopkit.testing import mint_access_token

            token = mint_access_token(KitSettings(var_dir=Path(var)))
            asyncio.run(drive(base, 2_000, args.concurrency, None))  # warm up: connections, caches
            for label, bearer in (("anonymous", None), ("with a token", token)):
                before, started = cpu_seconds(gateway.pid), time.monotonic()
                asyncio.run(drive(base, args.requests, args.concurrency, bearer))
                used, elapsed = cpu_seconds(gateway.pid) - before, time.monotonic() - started
                print(
                    f"{label:>13}: {used / args.requests * 1e6:7.1f} µs CPU per request "
                    f"({args.requests} requests, {args.requests / elapsed:.0f}/s)"
                )
        finally:
            for process in (gateway, upstream):
                process.terminate()
                process.wait(10)


if __name__ == "__main__":
    main()
