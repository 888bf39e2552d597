"""The gateway's CPU time per proxied request, against a trivial upstream.

    .venv/bin/python -m tools.bench.gateway_cpu [--requests 20000] [--concurrency 16]

Starts a one-route aiohttp upstream and `python -m gateway` as their own processes, drives them with a
pooled aiohttp client (anonymous and token-bearing requests, the rate limiter on but never refusing),
and prints the gateway process's user+system CPU seconds divided by the requests it proxied. The CPU
of the client and of the upstream is not counted, so the figure holds on a busy machine better than
a throughput figure does.

    ... -m tools.bench.gateway_cpu --instructions [--requests 1000]

runs the gateway under valgrind's callgrind instead and counts the instructions it executes per
request while the load runs: slow, but the same on an idle and on an overloaded machine.
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
from collections.abc import Callable
from functools import partial
from pathlib import Path

import aiohttp

REPO = Path(__file__).resolve().parents[2]
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
    deadline = time.monotonic() + 300.0
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


def instructions(pid: int, out: Path, run: Callable[[], None]) -> int:
    """Instructions the callgrind-run process `pid` executes during `run`."""
    subprocess.run(["callgrind_control", "--instr=on", str(pid)], check=True, capture_output=True)
    run()
    subprocess.run(["callgrind_control", "--instr=off", str(pid)], check=True, capture_output=True)
    subprocess.run(["callgrind_control", "--dump", str(pid)], check=True, capture_output=True)
    deadline = time.monotonic() + 60
    while not (dumps := list(out.parent.glob(out.name + ".*"))) and time.monotonic() < deadline:
        time.sleep(0.5)  # the dump is written by the process itself, a moment later
    time.sleep(1)
    total = 0
    for dump in dumps:
        total += sum(int(line.split()[1]) for line in dump.read_text().splitlines() if line.startswith("totals:"))
        dump.unlink()
    return total


def _drive(base: str, requests: int, concurrency: int, bearer: str | None) -> None:
    asyncio.run(drive(base, requests, concurrency, bearer))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--instructions", action="store_true", help="count instructions under callgrind")
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
            "SHOP_UPSTREAM_TIMEOUT": "600",  # callgrind slows the gateway fifty-fold
            **{f"SHOP_{s}_URL": f"http://127.0.0.1:{upstream_port}" for s in ("AUTH", "CATALOG", "ORDERS", "PAYMENTS")},
        }
        upstream = subprocess.Popen([sys.executable, "-c", UPSTREAM, str(upstream_port)], env=env)
        command = [sys.executable, "-m", "gateway", "--port", str(gateway_port)]
        out = Path(var) / "callgrind.out"
        if args.instructions:
            command = ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}", *command]
        gateway = subprocess.Popen(command, env=env, cwd=REPO, stderr=subprocess.DEVNULL if args.instructions else None)
        try:
            base = f"http://127.0.0.1:{gateway_port}"
            asyncio.run(wait_up(f"{base}/healthz"))
            from shopkit.settings import KitSettings
            from shopkit.testing import mint_access_token

            token = mint_access_token(KitSettings(var_dir=Path(var)))
            asyncio.run(drive(base, min(2_000, args.requests), args.concurrency, None))  # warm up: connections, caches
            for label, bearer in (("anonymous", None), ("with a token", token)):
                if args.instructions:
                    count = instructions(
                        gateway.pid, out, partial(_drive, base, args.requests, args.concurrency, bearer)
                    )
                    print(f"{label:>13}: {count / args.requests / 1000:7.0f} k instructions per request")
                    continue
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
                try:
                    process.wait(60)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()


if __name__ == "__main__":
    main()
