"""Reading `Prefer: wait=N` (RFC 7240)."""

from __future__ import annotations

import pytest

from shopkit.prefer import preferred_wait

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("header", "wait"),
    [
        (None, 0.0),
        ("", 0.0),
        ("wait=5", 5.0),
        (b"wait=5", 5.0),
        ("respond-async, wait=10", 10.0),
        ("WAIT = 3", 3.0),
        ('wait="4"', 4.0),
        ("wait=7; foo=bar", 7.0),
        ("wait=1000", 30.0),
        ("wait=-1", 0.0),
        ("wait=1.5", 0.0),
        ("wait=soon", 0.0),
        ("handling=lenient", 0.0),
        ("wait", 0.0),
    ],
)
def test_the_wait_a_request_prefers(header: str | bytes | None, wait: float) -> None:
    assert preferred_wait(header) == wait


def test_the_cap_is_the_callers() -> None:
    assert preferred_wait("wait=25", most=20) == 20
