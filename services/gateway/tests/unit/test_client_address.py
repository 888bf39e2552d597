"""Whose address a request is counted against: the TCP peer, unless N proxies of our own stand in
front (SHOP_TRUSTED_PROXIES=N), then the N-th address from the right of X-Forwarded-For."""

from __future__ import annotations

import pytest

from gateway.forwarding import Incoming, client_address

pytestmark = pytest.mark.unit

PEER = ("10.0.0.9", 51000)


@pytest.mark.parametrize(
    ("forwarded", "trusted", "expected"),
    [
        ([], 0, "10.0.0.9"),
        ([b"6.6.6.6"], 0, "10.0.0.9"),  # without trusted proxies the header means nothing
        ([b"6.6.6.6, 1.2.3.4"], 1, "1.2.3.4"),
        ([b"6.6.6.6, 1.2.3.4, 10.0.0.2"], 2, "1.2.3.4"),
        ([b"6.6.6.6", b"1.2.3.4"], 1, "1.2.3.4"),  # repeated headers are one list, in order
        ([b"1.2.3.4"], 2, "1.2.3.4"),  # fewer hops than proxies: it came past the outer proxy
        ([b"1.2.3.4:5678"], 1, "1.2.3.4"),
        ([b"[2001:db8::1]:443"], 1, "2001:db8::1"),
        ([b"2001:DB8:0::1"], 1, "2001:db8::1"),  # one spelling per address
        ([b"6.6.6.6, not-an-address"], 1, "10.0.0.9"),
        ([b""], 1, "10.0.0.9"),
    ],
)
def test_client_address(forwarded: list[bytes], trusted: int, expected: str) -> None:
    assert client_address(PEER, forwarded, trusted) == expected


def test_what_a_client_writes_left_of_the_trusted_hops_does_not_move_its_key() -> None:
    keys = {client_address(PEER, [f"{spoof}, 1.2.3.4".encode()], 1) for spoof in ("1.1.1.1", "2.2.2.2", "x")}
    assert keys == {"1.2.3.4"}


def test_headers_are_read_once_and_claims_about_the_client_are_not_passed_on() -> None:
    incoming = Incoming(
        [
            (b"host", b"shop.example"),
            (b"authorization", b"Bearer abc"),
            (b"x-forwarded-for", b"6.6.6.6"),
            (b"x-forwarded-host", b"evil.example"),
            (b"x-forwarded-proto", b"https"),
            (b"forwarded", b"for=6.6.6.6"),
            (b"x-real-ip", b"6.6.6.6"),
            (b"x-shop-service-token", b"guessed"),
            (b"connection", b"keep-alive, x-drop-me"),
            (b"x-drop-me", b"1"),
            (b"te", b"trailers"),
            (b"accept", b"application/json"),
        ]
    )
    assert incoming.authorization == b"Bearer abc"
    assert incoming.host == b"shop.example"
    assert incoming.forwarded_for == [b"6.6.6.6"]
    assert incoming.passed_on == [(b"authorization", b"Bearer abc"), (b"accept", b"application/json")]
