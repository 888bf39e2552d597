"""Gateway replicas as the supervisor runs them (`--replicas gateway=2`): separate processes sharing
one public port, their rate limits shared through Redis, each with its own internal port."""

from __future__ import annotations

import os
import socket
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from fastapi import FastAPI
from fastapi.responses import JSONResponse
from prometheus_client.parser import text_string_to_metric_families

from shopkit.settings import KitSettings
from shopkit.testing import ServerThread, free_port, mint_access_token
from tools.supervisor import Cluster, free_base_port

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def upstream() -> Iterator[str]:
    app = FastAPI()

    @app.api_route("/{rest:path}", methods=["GET", "POST"])
    async def anything() -> JSONResponse:
        return JSONResponse({"items": []})

    with ServerThread(app) as server:
        yield server.url


@pytest.fixture(scope="module")
def redis_url() -> str:
    url = os.environ.get("SHOP_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
    try:
        redis.Redis.from_url(url, socket_timeout=2).ping()
    except redis.RedisError:
        if os.environ.get("CI"):
            pytest.fail(f"Redis is not available at {url}", pytrace=False)
        pytest.skip(f"Redis is not available at {url}")
    return url


@pytest.fixture
def gateways(tmp_path: Path, upstream: str) -> Iterator[Callable[..., Cluster]]:
    started: list[Cluster] = []

    def start(replicas: int, **env: str) -> Cluster:
        cluster = Cluster(
            database_url="",
            amqp_url="",
            base_port=free_base_port({"gateway": replicas}),
            only=["gateway"],
            replicas={"gateway": replicas},
            log_dir=tmp_path / "log",
            provision=False,
            restart_on_death=False,
            env={
                "SHOP_ENVIRONMENT": "test",
                "SHOP_VAR_DIR": str(tmp_path / "var"),
                **{f"SHOP_{s}_URL": upstream for s in ("AUTH", "CATALOG", "ORDERS", "PAYMENTS")},
                **env,
            },
        )
        started.append(cluster)
        cluster.start()
        try:
            cluster.wait_ready(60)
        except TimeoutError as exc:
            pytest.fail(f"{exc}\n" + "\n".join(cluster.log_tail(n) for n in cluster.names), pytrace=False)
        return cluster

    yield start
    for cluster in started:
        cluster.stop()


def get(url: str, token: str | None = None) -> int:
    """One request on a new connection, so the kernel picks a replica for each."""
    host, port = url.removeprefix("http://").split(":")
    head = f"GET /api/products HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n"
    if token:
        head += f"Authorization: Bearer {token}\r\n"
    with socket.create_connection((host, int(port)), timeout=15) as sock:
        sock.sendall((head + "\r\n").encode())
        status_line = sock.makefile("rb").readline()
    return int(status_line.split()[1])


def metrics(cluster: Cluster, name: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(f"{cluster.internal_url(name)}/metrics", timeout=10) as response:
        text = response.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def answered(samples: dict[Any, float], status: str) -> float:
    return sum(
        value
        for (name, labels), value in samples.items()
        if name == "shop_http_requests_total" and ("service", "gateway") in labels and ("status", status) in labels
    )


def test_two_replicas_on_one_port_enforce_one_limit_through_redis(
    gateways: Callable[..., Cluster], redis_url: str, tmp_path: Path
) -> None:
    burst, rate = 20, 0.05
    cluster = gateways(
        2,
        SHOP_RATE_LIMIT_REDIS_URL=redis_url,
        SHOP_RATE_LIMIT_REDIS_PREFIX=f"test:{uuid.uuid4().hex[:12]}:",
        # Generous: this is about one limit across replicas, not about Redis's speed on a busy machine.
        SHOP_RATE_LIMIT_REDIS_TIMEOUT="2",
        SHOP_RATE_LIMIT_USER_BURST=str(burst),
        SHOP_RATE_LIMIT_USER_RATE=str(rate),
    )
    assert cluster.url("gateway") == cluster.url("gateway-2")  # one public port
    token = mint_access_token(KitSettings(var_dir=tmp_path / "var"))
    started = time.monotonic()
    statuses = [get(cluster.url("gateway"), token) for _ in range(3 * burst)]
    elapsed = time.monotonic() - started

    allowed = statuses.count(200)
    assert statuses.count(429) == len(statuses) - allowed
    # One bucket: the burst plus what refilled meanwhile; two buckets would have let 2 x burst through.
    assert burst <= allowed <= burst + 1 + rate * elapsed
    per_replica = {name: metrics(cluster, name) for name in ("gateway", "gateway-2")}
    for name, samples in per_replica.items():
        assert answered(samples, "200") + answered(samples, "429") > 0, f"{name} served nothing"
        assert samples[("shop_rate_limit_backend", (("backend", "redis"),))] == 1.0
        assert samples.get(("shop_rate_limit_fallbacks_total", ()), 0.0) == 0.0
    assert sum(answered(s, "200") for s in per_replica.values()) == allowed


def test_with_redis_unreachable_requests_are_served_and_the_metrics_say_local(
    gateways: Callable[..., Cluster], tmp_path: Path
) -> None:
    nowhere = f"redis://127.0.0.1:{free_port()}/0"
    cluster = gateways(
        1, SHOP_RATE_LIMIT_REDIS_URL=nowhere, SHOP_RATE_LIMIT_ANON_BURST="3", SHOP_RATE_LIMIT_ANON_RATE="0.001"
    )
    statuses = [get(cluster.url("gateway")) for _ in range(5)]
    assert statuses == [200, 200, 200, 429, 429]  # served, and still limited, by the replica's own buckets
    samples = metrics(cluster, "gateway")
    assert samples[("shop_rate_limit_backend", (("backend", "local"),))] == 1.0
    assert samples[("shop_rate_limit_backend", (("backend", "redis"),))] == 0.0
    assert samples[("shop_rate_limit_fallbacks_total", ())] == 5.0
    # The public port serves no metrics, only the internal one does.
    assert get_status(f"{cluster.url('gateway')}/metrics") == 404


def get_status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
