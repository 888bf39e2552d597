"""Rate limits shared through a real Redis, and what the gateway does when Redis is away, slow or back."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import redis
from prometheus_client import REGISTRY

from gateway.limiter import RateLimiter
from gateway.ratelimit import Limit
from shopkit.testing import free_port

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def redis_url() -> str:
    url = os.environ.get("SHOP_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
    try:
        redis.Redis.from_url(url, socket_timeout=2).ping()
    except redis.RedisError:
        message = f"Redis is not available at {url} (set SHOP_TEST_REDIS_URL)"
        if os.environ.get("CI"):
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    return url


@pytest.fixture
def prefix() -> str:
    return f"test:{uuid.uuid4().hex[:12]}:"


def backend() -> dict[str, float | None]:
    return {b: REGISTRY.get_sample_value("shop_rate_limit_backend", {"backend": b}) for b in ("redis", "local")}


def fallbacks() -> float:
    return REGISTRY.get_sample_value("shop_rate_limit_fallbacks_total") or 0.0


@contextlib.asynccontextmanager
async def limiter(url: str, *limits: Limit, **options: Any) -> AsyncIterator[RateLimiter]:
    options.setdefault("max_keys", 1000)
    shared = RateLimiter(limits, redis_url=url, **options)
    await shared.connect()  # as the gateway's start-up does
    try:
        yield shared
    finally:
        await shared.close()


async def test_two_replicas_on_one_redis_share_one_bucket(redis_url: str, prefix: str) -> None:
    user = Limit("user", rate=0.001, burst=10)
    async with (
        limiter(redis_url, user, redis_prefix=prefix, redis_timeout=2) as one,
        limiter(redis_url, user, redis_prefix=prefix, redis_timeout=2) as two,
    ):
        waits = [await (one if i % 2 else two).take(user, "alice") for i in range(30)]
        assert backend() == {"redis": 1.0, "local": 0.0}
    assert waits.count(0.0) == 10  # one bucket of 10, not two
    assert all(w > 0 for w in waits[10:])
    assert len(one.local(user)) == len(two.local(user)) == 0  # no local bucket was needed


async def test_concurrent_decisions_are_atomic(redis_url: str, prefix: str) -> None:
    limit = Limit("address", rate=0.001, burst=50)
    # A timeout no burst outlasts on a loaded machine: this is about atomicity, not about patience.
    async with (
        limiter(redis_url, limit, redis_prefix=prefix, redis_timeout=10) as one,
        limiter(redis_url, limit, redis_prefix=prefix, redis_timeout=10) as two,
    ):
        waits = await asyncio.gather(*((one, two)[i % 2].take(limit, "203.0.113.9") for i in range(200)))
    assert waits.count(0.0) == 50


async def test_one_round_trip_per_decision_and_idle_keys_expire(redis_url: str, prefix: str) -> None:
    limit = Limit("user", rate=2.0, burst=20)  # a full refill takes 10 s
    async with limiter(redis_url, limit, redis_prefix=prefix, redis_timeout=2) as shared:
        await shared.take(limit, "warm-up")  # the first call may load the script
        client = shared._redis._client  # type: ignore[union-attr]
        assert client is not None
        commands: list[object] = []
        original = client.execute_command

        async def counted(*args: Any, **kwargs: Any) -> Any:
            commands.append(args[0])
            return await original(*args, **kwargs)

        client.execute_command = counted  # type: ignore[method-assign]
        for _ in range(5):
            await shared.take(limit, "bob")
        assert commands == ["EVALSHA"] * 5
        ttl = redis.Redis.from_url(redis_url).pttl(f"{prefix}user:bob")
        assert 10_000 <= ttl <= 11_000


async def test_tokens_refill_at_the_rate(redis_url: str, prefix: str) -> None:
    limit = Limit("user", rate=20.0, burst=1)
    async with limiter(redis_url, limit, redis_prefix=prefix, redis_timeout=2) as shared:
        assert await shared.take(limit, "carol") == 0
        wait = await shared.take(limit, "carol")
        assert 0 < wait <= 0.05
        deadline = time.monotonic() + 10
        while await shared.take(limit, "carol") > 0:
            assert time.monotonic() < deadline, "the bucket never refilled"
            await asyncio.sleep(0.02)


async def test_an_unreachable_redis_leaves_requests_to_the_local_buckets(prefix: str) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"  # a port nothing listens on
    limit = Limit("address", rate=0.001, burst=2)
    before = fallbacks()
    async with limiter(url, limit, redis_prefix=prefix, redis_timeout=0.2) as local_only:
        assert backend() == {"redis": 0.0, "local": 1.0}
        waits = [await local_only.take(limit, "198.51.100.1") for _ in range(3)]
    assert waits[:2] == [0.0, 0.0] and waits[2] > 0  # still limited, by this process's own bucket
    assert fallbacks() - before == 3


class SilentServer:
    """Accepts connections and never answers: a Redis that hangs."""

    def __init__(self) -> None:
        self.socket = socket.create_server(("127.0.0.1", 0))
        self.socket.settimeout(0.1)
        self.accepted: list[socket.socket] = []
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._accept, daemon=True)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.socket.getsockname()[1]}/0"

    def _accept(self) -> None:
        while not self.stopped.is_set():
            with contextlib.suppress(TimeoutError):
                self.accepted.append(self.socket.accept()[0])

    def __enter__(self) -> SilentServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopped.set()
        self.thread.join(5)
        for connection in self.accepted:
            connection.close()
        self.socket.close()


@pytest.fixture
def silent_redis() -> Iterator[SilentServer]:
    with SilentServer() as server:
        yield server


async def test_a_redis_that_hangs_is_waited_for_briefly_then_left_alone(
    silent_redis: SilentServer, prefix: str
) -> None:
    limit = Limit("user", rate=0.001, burst=3)
    async with limiter(silent_redis.url, limit, redis_prefix=prefix, redis_timeout=0.05) as shared:
        # Every call returns (the generous bound only catches a hang), decided locally.
        waits = [await asyncio.wait_for(shared.take(limit, "dave"), 5) for _ in range(20)]
        assert backend() == {"redis": 0.0, "local": 1.0}
    assert waits[:3] == [0.0] * 3 and all(w > 0 for w in waits[3:])
    # After the first call timed out, Redis was left alone for the back-off: one connection, not 20.
    assert len(silent_redis.accepted) == 1


class CuttableProxy:
    """A TCP proxy to Redis whose line can be cut and mended: Redis going away and coming back."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.cut = False
        self._writers: set[asyncio.StreamWriter] = set()
        self._server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        self.sever()
        if self._server is not None:
            self._server.close()

    def sever(self) -> None:
        self.cut = True
        for writer in list(self._writers):
            writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.cut:
            writer.close()
            return
        up_reader, up_writer = await asyncio.open_connection(*self.target)
        self._writers |= {writer, up_writer}

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError, ConnectionError):
                while data := await source.read(65536):
                    sink.write(data)
                    await sink.drain()
            sink.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self._writers -= {writer, up_writer}


async def test_redis_going_away_and_coming_back(redis_url: str, prefix: str) -> None:
    parts = redis.Redis.from_url(redis_url).connection_pool.connection_kwargs
    proxy = CuttableProxy((parts.get("host", "127.0.0.1"), int(parts.get("port", 6379))))
    await proxy.start()
    limit = Limit("user", rate=0.001, burst=1000)
    try:
        url = f"redis://127.0.0.1:{proxy.port}/0"
        async with limiter(url, limit, redis_prefix=prefix, redis_timeout=2) as shared:
            assert await shared.take(limit, "erin") == 0
            assert backend()["redis"] == 1.0
            proxy.sever()
            assert await shared.take(limit, "erin") == 0  # served all the same
            assert backend() == {"redis": 0.0, "local": 1.0}
            proxy.cut = False
            deadline = time.monotonic() + 15  # the first back-off is 1 s
            while backend()["redis"] != 1.0:
                assert time.monotonic() < deadline, "the limiter never went back to Redis"
                await shared.take(limit, "erin")
                await asyncio.sleep(0.05)
            # Back on the shared bucket: Redis counted the decisions made while it answered.
            remaining = redis.Redis.from_url(redis_url).get(f"{prefix}user:erin")
            assert remaining is not None and float(remaining.split()[0]) < 999
    finally:
        await proxy.stop()
