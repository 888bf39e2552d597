"""Rules of login throttling with no I/O: the per-pair lock, the slowdown failures elsewhere earn, the
client address a login is counted under, and the bounded hashing queue."""

from __future__ import annotations

import asyncio
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest

from auth.client_address import client_address
from auth.domain import Admission, LoginPolicy, PairAttempt
from auth.passwords import HashingBusy, HashingQueue

pytestmark = pytest.mark.unit

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
POLICY = LoginPolicy(max_failures=5, window=timedelta(minutes=15), slowdown_step=0.05, slowdown_max=1.0)


def _ago(*minutes: float) -> list[datetime]:
    return [NOW - timedelta(minutes=m) for m in minutes]


# The pair lock (sliding window over the pair's failures)


def test_a_pair_with_four_recent_failures_may_try_again() -> None:
    assert POLICY.retry_after(_ago(1, 2, 3, 4), now=NOW) is None


def test_the_fifth_failure_locks_the_pair_until_the_oldest_leaves_the_window() -> None:
    assert POLICY.retry_after(_ago(10, 8, 6, 4, 2), now=NOW) == 5 * 60


def test_a_pair_locked_a_moment_ago_waits_the_whole_window() -> None:
    assert POLICY.retry_after(_ago(0, 0, 0, 0, 0), now=NOW) == 15 * 60


def test_the_lock_lifts_once_the_window_has_passed() -> None:
    assert POLICY.retry_after(_ago(15, 15, 15, 15, 15), now=NOW) is None
    assert POLICY.retry_after(_ago(14.99, 15, 15, 15, 15), now=NOW) is None
    assert POLICY.retry_after(_ago(14.99, 14.99, 14.99, 14.99, 14.99), now=NOW) == 1


def test_the_limit_is_the_policys() -> None:
    strict = LoginPolicy(max_failures=2, window=timedelta(minutes=1))
    assert strict.retry_after(_ago(0.5), now=NOW) is None
    assert strict.retry_after(_ago(0.5, 0.25), now=NOW) == 30


# Admission of a pair's attempt: failures, and checks still running


def _failed(*minutes: float) -> list[PairAttempt]:
    return [PairAttempt(at, checking=False) for at in _ago(*minutes)]


def _checking(*seconds: float) -> list[PairAttempt]:
    return [PairAttempt(NOW - timedelta(seconds=s), checking=True) for s in seconds]


def test_a_pair_with_tries_left_is_admitted() -> None:
    assert POLICY.admit([], now=NOW).admitted
    assert POLICY.admit(_failed(1, 2) + _checking(0.1, 0.2), now=NOW).admitted


def test_a_pair_with_five_failures_is_refused_until_the_window_lets_it_in() -> None:
    assert POLICY.admit(_failed(10, 8, 6, 4, 2), now=NOW) == Admission(retry_after=300)
    assert POLICY.admit(_failed(10, 8, 6, 4, 2) + _checking(0.1), now=NOW) == Admission(retry_after=300)


def test_a_pair_whose_remaining_tries_are_all_being_checked_waits_rather_than_being_refused() -> None:
    # None of them has failed yet: the sixth attempt neither gets a sixth guess nor a 429.
    assert POLICY.admit(_checking(0.1, 0.1, 0.2, 0.3, 0.4), now=NOW) == Admission(wait=True)
    assert POLICY.admit(_failed(3, 2, 1) + _checking(0.1, 0.2), now=NOW) == Admission(wait=True)


def test_a_check_abandoned_by_a_crash_counts_as_a_failure() -> None:
    abandoned = _checking(61, 62)
    assert POLICY.admit(_failed(3, 2, 1) + abandoned, now=NOW).retry_after == 15 * 60 - 3 * 60
    assert POLICY.check_abandoned(NOW - timedelta(minutes=1), now=NOW)
    assert not POLICY.check_abandoned(NOW - timedelta(seconds=59), now=NOW)


def test_attempts_older_than_the_window_do_not_count_at_all() -> None:
    assert POLICY.admit(
        _failed(16, 17, 18) + _failed(1, 2) + [PairAttempt(NOW - timedelta(minutes=20), True)], now=NOW
    ).admitted


# The slowdown earned by failures from other addresses


def test_a_few_failures_elsewhere_cost_the_owner_nothing() -> None:
    assert [POLICY.slowdown(n) for n in range(5)] == [0.0] * 5


def test_failures_elsewhere_beyond_the_limit_slow_down_doubling_up_to_the_cap() -> None:
    assert [POLICY.slowdown(n) for n in range(5, 11)] == [0.05, 0.1, 0.2, 0.4, 0.8, 1.0]


@pytest.mark.parametrize("failures", [11, 100, 10**6, 10**12])
def test_no_number_of_failures_elsewhere_slows_the_owner_beyond_the_cap(failures: int) -> None:
    assert POLICY.slowdown(failures) == 1.0


def test_counting_failures_elsewhere_can_stop_where_the_slowdown_stops_growing() -> None:
    for policy in (POLICY, LoginPolicy(slowdown_step=0.3, slowdown_max=0.2), LoginPolicy(slowdown_step=0.001)):
        limit = policy.slowdown_saturates_at
        assert policy.slowdown(limit) == policy.slowdown_max
        assert policy.slowdown(limit - 1) <= policy.slowdown_max


def test_a_zero_step_turns_the_slowdown_off() -> None:
    assert LoginPolicy(slowdown_step=0).slowdown(1000) == 0.0


# The client address


def test_the_rightmost_forwarded_entry_is_the_client() -> None:
    assert client_address(["203.0.113.7"], "10.0.0.2") == "203.0.113.7"
    # The gateway appends the address it decided on: whatever a client wrote stands to its left.
    assert client_address(["1.1.1.1, 6.6.6.6, 203.0.113.7"], "10.0.0.2") == "203.0.113.7"


def test_several_forwarded_header_lines_are_one_list() -> None:
    assert client_address(["6.6.6.6", "198.51.100.9"], "10.0.0.2") == "198.51.100.9"
    assert client_address(["6.6.6.6, 7.7.7.7", "198.51.100.9, 203.0.113.7"], "10.0.0.2") == "203.0.113.7"


def test_without_the_header_the_tcp_peer_is_the_client() -> None:
    assert client_address([], "10.0.0.2") == "10.0.0.2"
    assert client_address(["6.6.6.6, "], "10.0.0.2") == "10.0.0.2"
    assert client_address([""], "10.0.0.2") == "10.0.0.2"
    assert client_address([], None) == "unknown"


def test_one_spelling_per_address() -> None:
    assert client_address([" 203.0.113.7 "], None) == "203.0.113.7"
    assert client_address(["::ffff:203.0.113.7"], None) == "203.0.113.7"
    assert client_address([], "::ffff:203.0.113.7") == "203.0.113.7"


def test_an_ipv6_client_is_counted_per_64_so_rotating_addresses_in_it_gains_nothing() -> None:
    first = client_address(["2001:db8:1:2::1"], None)
    assert first == "2001:db8:1:2::/64"
    assert client_address(["2001:0db8:0001:0002:ffff:ffff:ffff:ffff"], None) == first
    assert client_address(["2001:db8:1:3::1"], None) != first


def test_what_is_not_an_address_is_kept_but_cut_to_the_column() -> None:
    assert client_address([], "testclient") == "testclient"
    assert client_address(["x" * 500], None) == "x" * 64


# The hashing queue


def test_a_place_in_line_counts_from_arrival_and_its_wait_from_then() -> None:
    hold = Hold()

    async def scenario() -> str:
        queue = _queue(slots=1, max_waiting=1, max_wait=0.1)
        queue.start()
        try:
            busy = asyncio.ensure_future(queue.run(hold))
            await hold.running()
            with queue.ticket() as early:
                # Taken on arrival, before any hashing is asked for: the line is full already.
                assert queue.saturated
                with pytest.raises(HashingBusy):
                    queue.ticket()
                await asyncio.sleep(0.15)  # the request's own work, past its whole budget
                assert early.expired
                with pytest.raises(HashingBusy):
                    await early.run(lambda: "never")
            assert queue.waiting == 0
            hold.release.set()
            await busy
            with queue.ticket() as late:
                await asyncio.sleep(0.15)
                # Expired, but a free slot needs no waiting: nothing to refuse.
                result = await late.run(lambda: "free slot")
                with pytest.raises(RuntimeError, match="one hash"):
                    await late.run(lambda: "twice")
            return str(result)
        finally:
            hold.release.set()
            queue.stop()

    assert asyncio.run(scenario()) == "free slot"


def _queue(slots: int = 2, max_waiting: int = 10, max_wait: float = 30.0) -> HashingQueue:
    return HashingQueue(slots=slots, max_waiting=max_waiting, max_wait=max_wait)


class Hold:
    """A hash that runs until the test lets it finish."""

    def __init__(self) -> None:
        self.started = threading.Event()
        self.release = threading.Event()

    def __call__(self) -> str:
        self.started.set()
        self.release.wait(30)
        return "held"

    async def running(self) -> None:
        assert await asyncio.to_thread(self.started.wait, 30)


def test_no_more_hashes_run_at_once_than_there_are_slots() -> None:
    running = 0
    most = 0
    lock = threading.Lock()

    def work(n: int) -> int:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        time.sleep(0.01)
        with lock:
            running -= 1
        return n * 2

    async def burst() -> list[int]:
        queue = _queue(slots=2, max_waiting=50)
        queue.start()
        try:
            return list(await asyncio.gather(*(queue.run(work, n) for n in range(20))))
        finally:
            queue.stop()

    assert asyncio.run(burst()) == [n * 2 for n in range(20)]
    assert most == 2


def test_beyond_the_waiting_bound_callers_are_refused_at_once() -> None:
    hold = Hold()

    async def scenario() -> tuple[list[object], int]:
        queue = _queue(slots=1, max_waiting=2)
        queue.start()
        try:
            busy = asyncio.ensure_future(queue.run(hold))
            await hold.running()
            waiters = [asyncio.ensure_future(queue.run(lambda: "done")) for _ in range(2)]
            await asyncio.sleep(0)  # both run up to their wait for the slot
            assert queue.waiting == 2 and queue.saturated
            with pytest.raises(HashingBusy) as refused:
                await queue.run(lambda: "never")
            hold.release.set()
            outcomes = await asyncio.gather(busy, *waiters)
            assert not queue.saturated
            return outcomes, refused.value.retry_after
        finally:
            hold.release.set()
            queue.stop()

    outcomes, retry_after = asyncio.run(scenario())
    assert outcomes == ["held", "done", "done"]
    assert retry_after == 30  # the wait bound, rounded up


def test_a_wait_longer_than_the_bound_is_refused_and_frees_its_place() -> None:
    hold = Hold()

    async def scenario() -> tuple[int, int]:
        queue = _queue(slots=1, max_waiting=5, max_wait=0.05)
        queue.start()
        try:
            busy = asyncio.ensure_future(queue.run(hold))
            await hold.running()
            with pytest.raises(HashingBusy) as refused:
                await queue.run(lambda: "never")
            waiting_after = queue.waiting
            hold.release.set()
            assert await busy == "held"
            assert await queue.run(lambda: 7) == 7  # the slot came back
            return refused.value.retry_after, waiting_after
        finally:
            hold.release.set()
            queue.stop()

    assert asyncio.run(scenario()) == (1, 0)


def test_the_line_is_refused_to_whoever_could_not_be_served_within_the_wait_bound() -> None:
    hold = Hold()

    async def scenario() -> None:
        queue = HashingQueue(slots=1, max_waiting=10, max_wait=1.0, seconds_per_hash=0.4)
        queue.start()
        try:
            assert queue.expected_wait == 0.0  # a free slot: no wait, whatever hashes cost
            busy = asyncio.ensure_future(queue.run(hold))
            await hold.running()
            with queue.ticket(), queue.ticket():  # expected waits 0.4 s and 0.8 s
                assert queue.expected_wait == pytest.approx(1.2)
                with pytest.raises(HashingBusy) as refused:
                    queue.ticket()  # only 2 of 10 places taken, but it would wait past the bound
                assert refused.value.retry_after == 1
                for _ in range(20):  # hashes got faster (the machine is less busy now)
                    queue.observe(0.1)
                assert queue.seconds_per_hash == pytest.approx(0.1, rel=0.05)
                with queue.ticket():
                    pass
            hold.release.set()
            await busy
        finally:
            hold.release.set()
            queue.stop()

    asyncio.run(scenario())


def test_hashes_are_timed_as_they_run() -> None:
    async def scenario() -> float:
        queue = _queue(slots=1)
        queue.start()
        try:
            await queue.run(time.sleep, 0.05)
            return queue.seconds_per_hash
        finally:
            queue.stop()

    assert asyncio.run(scenario()) >= 0.05


def test_a_ticket_stepping_aside_frees_its_place_and_keeps_its_budget() -> None:
    async def scenario() -> list[object]:
        queue = _queue(slots=1, max_waiting=1, max_wait=0.2)
        queue.start()
        try:
            seen: list[object] = []
            with queue.ticket() as ticket:

                async def pause() -> None:
                    seen.append(queue.waiting)
                    with queue.ticket():  # its place is free for another meanwhile
                        seen.append(queue.waiting)
                    await asyncio.sleep(0.3)  # longer than the whole budget

                await ticket.step_aside(pause())
                seen.append(queue.waiting)
                seen.append(await ticket.run(lambda: "hashed after the pause"))
            with queue.ticket() as ticket:

                async def crowded() -> None:
                    queue.waiting += 1  # the line filled up meanwhile

                with pytest.raises(HashingBusy):
                    await ticket.step_aside(crowded())
                queue.waiting -= 1
            seen.append(queue.waiting)
            return seen
        finally:
            queue.stop()

    assert asyncio.run(scenario()) == [0, 1, 1, "hashed after the pause", 0]


def test_a_failing_hash_gives_its_slot_back() -> None:
    def broken() -> None:
        raise ValueError("argon2 said no")

    async def scenario() -> int:
        queue = _queue(slots=1, max_wait=1)
        queue.start()
        try:
            with pytest.raises(ValueError):
                await queue.run(broken)
            return await queue.run(lambda: 3)
        finally:
            queue.stop()

    assert asyncio.run(scenario()) == 3


def test_the_queue_must_be_started_by_the_lifespan() -> None:
    with pytest.raises(RuntimeError, match="not started"):
        asyncio.run(_queue().run(lambda: None))
    with pytest.raises(ValueError):
        HashingQueue(slots=0, max_waiting=1, max_wait=1)
