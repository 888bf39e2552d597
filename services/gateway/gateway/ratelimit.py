"""Token buckets per caller: per user when a valid token is sent, per client address otherwise, so
many users behind one NAT are not throttled as one."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass


@dataclass
class Bucket:
    tokens: float
    updated: float


class TokenBuckets:
    def __init__(self, rate: float, burst: float, *, max_keys: int = 100_000) -> None:
        self.rate = rate
        self.burst = burst
        self.max_keys = max_keys
        self._buckets: dict[str, Bucket] = {}

    def take(self, key: str, now: float | None = None) -> float:
        """Take one token. Returns 0 when allowed, else the seconds until a token is available."""
        now = time.monotonic() if now is None else now
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self.max_keys:
                self._evict_full(now)
            bucket = self._buckets[key] = Bucket(self.burst, now)
        else:
            bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.updated) * self.rate)
            bucket.updated = now
        if bucket.tokens >= 1:
            bucket.tokens -= 1
            return 0.0
        return (1 - bucket.tokens) / self.rate

    def _evict_full(self, now: float) -> None:
        """A bucket that has refilled is the same as no bucket: drop those to bound memory."""
        full_after = self.burst / self.rate
        stale = [k for k, b in self._buckets.items() if now - b.updated >= full_after]
        for key in stale:
            del self._buckets[key]
        if len(self._buckets) >= self.max_keys:
            self._buckets.clear()


def retry_after_header(wait: float) -> str:
    return str(max(1, math.ceil(wait)))
