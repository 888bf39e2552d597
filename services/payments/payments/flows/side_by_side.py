"""Due provider calls (refunds, cancellations) run several at once: each waits on the provider most of
its time, and a backlog of them (a wave of rejected, cancelled or timed-out orders) must not drain one
round trip after the other. Each row's claim keeps any two workers from doing one twice."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

AT_ONCE = 4

Item = TypeVar("Item")


def run_side_by_side(call: Callable[[Item], None], due: Sequence[Item], *, name: str) -> int:
    """Runs `call` on every due item, up to AT_ONCE at a time (one alone in this thread); returns how
    many were due."""
    if len(due) <= 1:
        for item in due:
            call(item)
        return len(due)
    with ThreadPoolExecutor(AT_ONCE, thread_name_prefix=f"payments-{name}") as pool:
        list(pool.map(call, due))
    return len(due)
