"""The gateway's rate limiter: token buckets shared by every replica through Redis when
SHOP_RATE_LIMIT_REDIS_URL is set, else (and whenever Redis does not answer) this process's own.

Redis decides a request in one round trip: an atomic Lua script (EVALSHA) refills and takes from the
bucket by Redis's own clock and sets the key's TTL to the time it takes to refill, so an idle
caller's key vanishes. The limiter never fails or holds up a request because of Redis: a call that
does not answer within the timeout falls back to the local buckets, and Redis is then left alone for
a back-off (1 s, doubling to 30 s) before one request tries it again."""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Iterable

from prometheus_client import Counter, Gauge
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.commands.core import AsyncScript
from redis.exceptions import RedisError

from gateway.ratelimit import Limit, TokenBuckets

log = logging.getLogger("gateway.limiter")

BACKEND = Gauge("shop_rate_limit_backend", "1 for where rate limits are decided now", ["backend"])
FALLBACKS = Counter(
    "shop_rate_limit_fallbacks_total", "Rate-limit decisions made with local buckets because Redis was unavailable"
)
LIMITED = Counter("shop_rate_limited_total", "Requests refused with 429", ["limit"])

MIN_BACKOFF = 1.0
MAX_BACKOFF = 30.0

# KEYS[1]: the bucket. ARGV: rate (tokens/s), burst, TTL (ms). Returns the seconds to wait ("0" when
# a token was taken), as a string: Redis would truncate a Lua number to an integer.
TOKEN_BUCKET = """
if redis.replicate_commands then redis.replicate_commands() end
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local tokens = burst
local state = redis.call('GET', KEYS[1])
if state then
  local saved, at = string.match(state, '^(%S+) (%S+)$')
  if saved then
    tokens = math.min(burst, tonumber(saved) + math.max(0, now - tonumber(at)) * rate)
  end
end
local wait = 0
if tokens >= 1 then tokens = tokens - 1 else wait = (1 - tokens) / rate end
redis.call('SET', KEYS[1], string.format('%.6f %.6f', tokens, now), 'PX', ARGV[3])
return string.format('%.6f', wait)
"""

_REDIS_FAILURES = (RedisError, OSError, TimeoutError, ValueError)
_CONNECTIONS = 32


class RedisBuckets:
    def __init__(self, url: str, *, prefix: str, timeout: float) -> None:
        self.url = url
        self.prefix = prefix
        self.timeout = timeout
        self._client: Redis | None = None
        self._script: AsyncScript | None = None
        self._args: dict[str, tuple[float, float, int]] = {}

    def _connected(self) -> Redis:
        # Created on first use, inside the event loop that serves requests (its connections belong to it).
        if self._client is None:
            # A bounded pool: a burst of requests queues for a few warm connections (a decision holds
            # one for a round trip) instead of opening one each, which outlasts the timeout.
            pool = BlockingConnectionPool.from_url(
                self.url,
                max_connections=_CONNECTIONS,
                timeout=self.timeout,
                socket_timeout=self.timeout,
                socket_connect_timeout=self.timeout,
                retry=Retry(NoBackoff(), 0),  # the limiter backs off itself; a retry would double the wait
            )
            self._client = Redis(connection_pool=pool)
            self._script = self._client.register_script(TOKEN_BUCKET)
        return self._client

    async def take(self, limit: Limit, key: str) -> float:
        script = self._script
        if script is None:
            self._connected()
            script = self._script
            assert script is not None
        args = self._args.get(limit.name)
        if args is None:
            ttl_ms = math.ceil(limit.refill_seconds * 1000) + 1000
            args = self._args[limit.name] = (limit.rate, limit.burst, ttl_ms)
        async with asyncio.timeout(self.timeout):
            reply = await script(keys=(f"{self.prefix}{limit.name}:{key}",), args=args)
        return float(reply)

    async def ping(self) -> None:
        async with asyncio.timeout(self.timeout):
            await self._connected().ping()

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose(close_connection_pool=True)
            self._client, self._script = None, None


class RateLimiter:
    def __init__(
        self,
        limits: Iterable[Limit],
        *,
        max_keys: int,
        redis_url: str | None = None,
        redis_prefix: str = "shop:ratelimit:",
        redis_timeout: float = 0.1,
    ) -> None:
        self._local = {limit.name: TokenBuckets(limit.rate, limit.burst, max_keys=max_keys) for limit in limits}
        self._redis = RedisBuckets(redis_url, prefix=redis_prefix, timeout=redis_timeout) if redis_url else None
        # Local until Redis has answered: the gauge says what decides requests, never what is hoped for.
        self._redis_up = False
        self._retry_at = 0.0
        self._backoff = MIN_BACKOFF
        self._probing = False
        _show_backend("local")

    @property
    def shared(self) -> bool:
        """Whether decisions go to Redis (then `take`); else `take_local` decides alone."""
        return self._redis is not None

    def local(self, limit: Limit) -> TokenBuckets:
        return self._local[limit.name]

    def take_local(self, limit: Limit, key: str) -> float:
        return self._counted(limit, self._local[limit.name].take(key))

    async def take(self, limit: Limit, key: str) -> float:
        """0 when the caller may go on, else the seconds until it may."""
        redis = self._redis
        if redis is not None:
            if self._redis_up or self._may_probe():
                try:
                    wait = await redis.take(limit, key)
                except _REDIS_FAILURES as exc:
                    self._redis_failed(exc)
                else:
                    self._redis_answered()
                    return self._counted(limit, wait)
                finally:
                    self._probing = False
            FALLBACKS.inc()
        return self._counted(limit, self._local[limit.name].take(key))

    async def connect(self) -> None:
        """Find out at start-up whether Redis answers, so the metrics say so before the first request."""
        if self._redis is None:
            return
        try:
            await self._redis.ping()
        except _REDIS_FAILURES as exc:
            self._redis_failed(exc)
        else:
            self._redis_answered()

    async def close(self) -> None:
        if self._redis is not None:
            await self._redis.close()

    def _may_probe(self) -> bool:
        # One request at a time finds out whether Redis is back; the others meanwhile go on locally.
        if self._probing or time.monotonic() < self._retry_at:
            return False
        self._probing = True
        return True

    def _redis_failed(self, exc: BaseException) -> None:
        now = time.monotonic()
        if now < self._retry_at:
            return  # the other requests in flight when Redis went away: one back-off step per outage
        if self._redis_up or self._backoff == MIN_BACKOFF:
            log.warning("Redis is unavailable for rate limits; using local buckets (%s)", type(exc).__name__)
        self._redis_up = False
        self._retry_at = now + self._backoff
        self._backoff = min(self._backoff * 2, MAX_BACKOFF)
        _show_backend("local")

    def _redis_answered(self) -> None:
        if not self._redis_up:
            log.info("rate limits are shared through Redis")
            self._redis_up = True
            self._backoff = MIN_BACKOFF
            _show_backend("redis")

    @staticmethod
    def _counted(limit: Limit, wait: float) -> float:
        if wait:
            LIMITED.labels(limit.name).inc()
        return wait


def _show_backend(backend: str) -> None:
    BACKEND.labels("redis").set(1 if backend == "redis" else 0)
    BACKEND.labels("local").set(1 if backend == "local" else 0)
