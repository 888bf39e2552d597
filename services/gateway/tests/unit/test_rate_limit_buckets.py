import pytest

from gateway.app import route_for
from gateway.ratelimit import TokenBuckets, retry_after_header

pytestmark = pytest.mark.unit


def test_burst_then_refused_then_refilled_at_rate() -> None:
    buckets = TokenBuckets(rate=10, burst=3)
    assert [buckets.take("u", now=0.0) for _ in range(3)] == [0, 0, 0]
    wait = buckets.take("u", now=0.0)
    assert wait == pytest.approx(0.1)
    assert buckets.take("u", now=0.1) == 0
    assert buckets.take("u", now=0.1) > 0


def test_callers_have_their_own_buckets() -> None:
    buckets = TokenBuckets(rate=1, burst=1)
    assert buckets.take("alice", now=0.0) == 0
    assert buckets.take("alice", now=0.0) > 0
    assert buckets.take("bob", now=0.0) == 0


def test_memory_is_bounded_by_dropping_refilled_buckets() -> None:
    buckets = TokenBuckets(rate=1, burst=1, max_keys=10)
    for i in range(10):
        buckets.take(f"k{i}", now=0.0)
    buckets.take("late", now=5.0)
    assert len(buckets._buckets) == 1


def test_a_full_table_evicts_the_least_recently_used_bucket_only() -> None:
    buckets = TokenBuckets(rate=0.001, burst=2, max_keys=3)
    for key in ("a", "b", "c"):
        buckets.take(key, now=0.0)
        buckets.take(key, now=0.0)
        assert buckets.take(key, now=0.0) > 0  # every caller is out of tokens
    buckets.take("a", now=1.0)  # a was used last: b is now the least recently used
    assert buckets.take("newcomer", now=2.0) == 0
    assert len(buckets) == 3
    assert buckets.take("a", now=3.0) > 0  # kept: still limited
    assert buckets.take("c", now=3.0) > 0  # kept: still limited
    assert buckets.take("b", now=3.0) == 0  # evicted, so it starts again with a full bucket


def test_a_flood_of_new_keys_never_resets_a_recently_active_caller() -> None:
    buckets = TokenBuckets(rate=0.001, burst=1, max_keys=100)
    buckets.take("victim-of-limits", now=0.0)
    for i in range(10_000):
        now = i / 1000
        if i % 50 == 0:  # the limited caller keeps trying, and stays limited
            assert buckets.take("victim-of-limits", now=now) > 0
        buckets.take(f"spoofed-{i}", now=now)
        assert len(buckets) <= 100


def test_retry_after_is_whole_seconds_at_least_one() -> None:
    assert retry_after_header(0.01) == "1"
    assert retry_after_header(2.2) == "3"


@pytest.mark.parametrize(
    ("path", "service"),
    [
        ("/api/auth/login", "auth"),
        ("/api/products", "catalog"),
        ("/api/products/123/stock-movements", "catalog"),
        ("/api/orders/", "orders"),
        ("/api/payments/webhooks/stripe", "payments"),
        ("/api/categories", "catalog"),
        ("/api/productsX", None),
        ("/internal/products/lookup", None),
        ("/docs", None),
    ],
)
def test_routing_by_prefix(path: str, service: str | None) -> None:
    assert route_for(path) == service
