"""argon2id password hashes, and the bounded queue requests hash through. Clear-text passwords go in
here and never come out."""

from __future__ import annotations

import asyncio
import ctypes
import math
import os
import secrets
import threading
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

# OWASP's argon2id baseline (19 MiB, 2 passes, 1 lane). argon2-cffi's default takes 64 MiB per hash,
# which with a threadpool of concurrent logins pushes the process past its memory budget.
DEFAULT_HASHER = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)

T = TypeVar("T")

_M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter
_MMAP_THRESHOLD = 1 << 20


def return_hash_memory_promptly() -> None:
    """Have each hash's memory handed back to the system as soon as the hash ends.

    argon2 asks malloc for `memory_cost` (19 MiB) per hash. glibc serves a block that large with its own
    mapping and unmaps it when freed, but only until the first such free: then it raises its mmap
    threshold to the block's size and serves later ones from its heaps, which keep the memory and
    fragment it. The process would hold the hashing memory of its busiest moment for good, and more
    whenever fragments no longer fit. A fixed threshold (1 MiB) keeps every block that large in a mapping
    of its own; smaller allocations are unaffected. Elsewhere than glibc this does nothing."""
    try:
        ctypes.CDLL(None).mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD)
    except (OSError, AttributeError):
        pass


class Passwords:
    """Hashing and verifying, synchronously: CPU and `memory_cost` of RAM per call. Requests go through
    a HashingQueue; only start-up and the command line call this directly."""

    def __init__(self, hasher: PasswordHasher | None = None) -> None:
        self._hasher = hasher or DEFAULT_HASHER
        started = time.monotonic()
        # Checked when the email is unknown, so a miss costs the same argon2 work as a wrong password
        # and the answer time does not tell which emails have accounts.
        self._decoy = self._hasher.hash(secrets.token_urlsafe(16))
        # What one hash took here and now: a HashingQueue's first estimate.
        self.seconds_per_hash = time.monotonic() - started

    def hash(self, password: str) -> str:
        return self._hasher.hash(password)

    def verify(self, stored_hash: str | None, password: str) -> bool:
        try:
            matches = self._hasher.verify(stored_hash or self._decoy, password)
        except (VerificationError, InvalidHashError):
            return False
        return matches and stored_hash is not None

    def needs_rehash(self, stored_hash: str) -> bool:
        return self._hasher.check_needs_rehash(stored_hash)


class HashingBusy(Exception):
    """The line is full, a slot would not free in time, or it did not: come back after `retry_after`."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"password hashing is saturated; retry after {retry_after}s")
        self.retry_after = retry_after


class HashingQueue:
    """At most `slots` hashes at once, each on one of `slots` threads of its own.

    Hashing is CPU- and memory-bound: more at once than there are cores only queues inside argon2 and
    multiplies memory (each hash holds `memory_cost` of RAM), so the slots also bound the process's peak
    memory. A request in line is a suspended coroutine: it holds no thread and no database connection
    while it waits, so a burst of logins cannot starve the other routes. A request takes its place in line
    (`ticket`) when it arrives, before the database work that precedes its hash, so that the line bounds
    that work too: at most `max_waiting` in line, none for longer than `max_wait` seconds from its
    arrival; beyond either, HashingBusy, never an unbounded queue.

    The line is also refused to a request that could not be served in time anyway: hashes are timed as
    they run (`seconds_per_hash`, a moving average of wall time), and a newcomer whose expected wait
    exceeds `max_wait` is told at once. On a machine short of CPU, where each hash takes several times
    longer, the line shortens with it, instead of filling with requests that would only do their
    database work, wait out the whole budget and be refused after all."""

    def __init__(self, *, slots: int, max_waiting: int, max_wait: float, seconds_per_hash: float = 0.0) -> None:
        if slots < 1:
            raise ValueError("password hashing needs at least one slot")
        self.slots = slots
        self.max_waiting = max_waiting
        self.max_wait = max_wait
        self.seconds_per_hash = seconds_per_hash
        self.waiting = 0
        # What a refused caller is told: by then the queue has moved on by at least one full wait.
        self.retry_after = max(1, math.ceil(max_wait))
        self._slots: asyncio.Semaphore | None = None
        self._threads: ThreadPoolExecutor | None = None

    def start(self) -> None:
        """Bind to the running event loop (the app's lifespan calls this)."""
        self._slots = asyncio.Semaphore(self.slots)
        self._threads = ThreadPoolExecutor(
            max_workers=self.slots, thread_name_prefix="auth-argon2", initializer=_yield_cpu_to_requests
        )

    def stop(self) -> None:
        if self._threads is not None:
            self._threads.shutdown(wait=False, cancel_futures=True)
        self._slots = self._threads = None

    @property
    def expected_wait(self) -> float:
        """Seconds a newcomer would wait for a slot: none while one is free, else until the hashes
        running and those of the line ahead of it are done, `slots` at a time."""
        if self._slots is None or not self._slots.locked():
            return 0.0
        return (self.waiting + 1) * self.seconds_per_hash / self.slots

    @property
    def saturated(self) -> bool:
        return self.waiting >= self.max_waiting or self.expected_wait > self.max_wait

    def observe(self, seconds: float) -> None:
        self.seconds_per_hash = seconds if not self.seconds_per_hash else 0.8 * self.seconds_per_hash + 0.2 * seconds

    def ticket(self) -> Ticket:
        """A place in line from now, for one hash within `max_wait` seconds (HashingBusy when full)."""
        if self._slots is None or self._threads is None:
            raise RuntimeError("the hashing queue is not started (the app's lifespan starts it)")
        if self.saturated:
            raise HashingBusy(self.retry_after)
        return Ticket(self, self._slots, self._threads)

    async def run(self, work: Callable[..., T], *args: object) -> T:
        """`work(*args)` on a hashing thread once a slot is free (HashingBusy when none frees in time)."""
        with self.ticket() as ticket:
            return await ticket.run(work, *args)


class Ticket:
    """A place in a HashingQueue's line, taken at `deadline - max_wait`, given up at the first of: a slot
    for its hash, its deadline, or leaving the `with` block."""

    def __init__(self, queue: HashingQueue, slots: asyncio.Semaphore, threads: ThreadPoolExecutor) -> None:
        self._queue = queue
        self._slots = slots
        self._threads = threads
        self.deadline = time.monotonic() + queue.max_wait
        self._in_line = True
        queue.waiting += 1

    def __enter__(self) -> Ticket:
        return self

    def __exit__(self, *exc: object) -> None:
        self._leave_line()

    def _leave_line(self) -> None:
        if self._in_line:
            self._in_line = False
            self._queue.waiting -= 1

    @property
    def remaining(self) -> float:
        """Seconds left of its budget (zero or less: spent)."""
        return self.deadline - time.monotonic()

    @property
    def expired(self) -> bool:
        return self.remaining <= 0

    async def step_aside(self, pause: Awaitable[None]) -> None:
        """Give up the place in line while `pause` runs, then take one again at the back (HashingBusy if
        the line is full by then), its budget not counting the pause: a login being slowed down holds
        no place in the line that every login shares."""
        self._leave_line()
        started = time.monotonic()
        await pause
        if self._queue.saturated:
            raise HashingBusy(self._queue.retry_after)
        self.deadline += time.monotonic() - started
        self._in_line = True
        self._queue.waiting += 1

    async def run(self, work: Callable[..., T], *args: object) -> T:
        if not self._in_line:
            raise RuntimeError("a ticket is good for one hash")
        try:
            async with asyncio.timeout_at(_loop_time(self.deadline)):
                await self._slots.acquire()
        except TimeoutError:
            raise HashingBusy(self._queue.retry_after) from None
        finally:
            self._leave_line()
        started = time.monotonic()
        try:
            return await asyncio.get_running_loop().run_in_executor(self._threads, work, *args)
        finally:
            self._slots.release()
            self._queue.observe(time.monotonic() - started)


# Linux niceness of the hashing threads (0 is the process's own; 19 the lowest).
HASHING_NICENESS = 5


def _yield_cpu_to_requests() -> None:
    """Run this hashing thread at a lower priority than the rest of the process: when CPU is short, the
    event loop and the database threads (every other request, and the answers that shed logins) run
    first, and hashing slows down instead. The queue times hashes, so a slower hash shortens the line;
    with CPU to spare the niceness changes nothing. On Linux a thread has its own niceness."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), HASHING_NICENESS)
    except (AttributeError, OSError):
        pass


def _loop_time(monotonic_deadline: float) -> float:
    """The event loop's clock reading for a time.monotonic() deadline (the two clocks may differ)."""
    return asyncio.get_running_loop().time() + (monotonic_deadline - time.monotonic())
