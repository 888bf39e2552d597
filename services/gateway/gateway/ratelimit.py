"""Token buckets per caller: per user when a valid token is sent, per client address otherwise, so
many users behind one NAT are not throttled as one; provider callbacks per address, with a limit of
their own. In this process's memory here; shared by every replica through Redis in redis_buckets."""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from dataclasses import dataclass

# A full table first drops up to this many refilled buckets, then the least recently used one: a
# bounded amount of work for the request that finds the table full.
_SWEEP = 64


@dataclass(frozen=True, slots=True)
class Limit:
    name: str  # "user", "address" or "callback": also the namespace of its keys
    rate: float  # tokens per second
    burst: float  # bucket size

    @property
    def refill_seconds(self) -> float:
        return self.burst / self.rate


@dataclass(slots=True)
class Bucket:
    tokens: float
    updated: float


class TokenBuckets:
    """One limit's buckets, at most `max_keys` of them, least recently used first in line to go.

    Evicting a bucket hands its caller a full one, so eviction must never be wholesale (an attacker
    who fills the table would otherwise reset everyone's limits, their own included): a refilled
    bucket is the same as none and goes first, then the one used longest ago."""

    def __init__(self, rate: float, burst: float, *, max_keys: int = 100_000) -> None:
        self.rate = rate
        self.burst = burst
        self.max_keys = max(1, max_keys)
        self._buckets: OrderedDict[str, Bucket] = OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

    def take(self, key: str, now: float | None = None) -> float:
        """Take one token. Returns 0 when allowed, else the seconds until a token is available."""
        now = time.monotonic() if now is None else now
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self.max_keys:
                self._evict(now)
            bucket = self._buckets[key] = Bucket(self.burst, now)
        else:
            self._buckets.move_to_end(key)
            bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.updated) * self.rate)
            bucket.updated = now
        if bucket.tokens >= 1:
            bucket.tokens -= 1
            return 0.0
        return (1 - bucket.tokens) / self.rate

    def _evict(self, now: float) -> None:
        # Buckets sit in the order of their last use, so the refilled ones are all at the front.
        refilled_before = now - self.burst / self.rate
        buckets = self._buckets
        for _ in range(_SWEEP):
            if not buckets or next(iter(buckets.values())).updated > refilled_before:
                break
            buckets.popitem(last=False)
        if len(buckets) >= self.max_keys:
            buckets.popitem(last=False)


def retry_after_header(wait: float) -> str:
    return str(max(1, math.ceil(wait)))
