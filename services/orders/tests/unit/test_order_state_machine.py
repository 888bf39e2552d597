"""The transition table, exhaustively: every allowed move applies, every other one raises."""

from __future__ import annotations

import itertools

import pytest

from orders.domain import TERMINAL, TRANSITIONS, InvalidTransition, OrderStatus, can_transition, transition

pytestmark = pytest.mark.unit

S = OrderStatus

# Written out independently of domain.TRANSITIONS so a wrong edit of the table fails here.
EXPECTED_ALLOWED = {
    (S.PENDING_PAYMENT, S.PAID),
    (S.PENDING_PAYMENT, S.CANCELLED),
    (S.PAID, S.CONFIRMED),
    (S.PAID, S.REFUND_PENDING),
    (S.CONFIRMED, S.SHIPPED),
    (S.CONFIRMED, S.REFUND_PENDING),
    (S.SHIPPED, S.DELIVERED),
    (S.SHIPPED, S.REFUND_PENDING),
    (S.DELIVERED, S.REFUND_PENDING),
    (S.REFUND_PENDING, S.REFUNDED),
}
ALL_PAIRS = list(itertools.product(OrderStatus, OrderStatus))
FORBIDDEN = [pair for pair in ALL_PAIRS if pair not in EXPECTED_ALLOWED]


def test_the_table_covers_every_status_and_matches_the_contract():
    assert set(TRANSITIONS) == set(OrderStatus)
    assert {(a, b) for a, targets in TRANSITIONS.items() for b in targets} == EXPECTED_ALLOWED
    assert TERMINAL == {S.CANCELLED, S.REFUNDED}


@pytest.mark.parametrize(("current", "target"), sorted(EXPECTED_ALLOWED), ids=lambda s: str(s))
def test_allowed_transition_applies(current, target):
    assert transition(current, target) is target
    assert transition(current.value, target.value) is target
    assert can_transition(current, target)


@pytest.mark.parametrize(("current", "target"), FORBIDDEN, ids=lambda s: str(s))
def test_forbidden_transition_raises(current, target):
    with pytest.raises(InvalidTransition) as raised:
        transition(current, target)
    assert (raised.value.current, raised.value.target) == (current, target)
    assert not can_transition(current, target)


def test_unknown_status_is_refused():
    with pytest.raises(ValueError):
        transition("pending_payment", "lost")
