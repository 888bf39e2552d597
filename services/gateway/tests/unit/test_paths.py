"""The one path the gateway decides on: every spelling that a server or client library behind it
could read as another path is refused; everything a public route uses passes, decoded once."""

from __future__ import annotations

import pytest

from gateway.paths import BadPath, check_query, normalise, raw_path_of
from shopkit.problems import BadRequest

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("raw", "path"),
    [
        (b"/api/products", "/api/products"),
        (b"/api/orders/", "/api/orders/"),
        (b"/api/auth/jwks.json", "/api/auth/jwks.json"),
        (b"/api/products/5f0c6a7e-1b7d-4a8e-9a43-7e6f1c2d3b4a/stock-movements", None),
        (b"/api/products/%41bc", "/api/products/Abc"),  # an escaped letter is the letter
        (b"/api/products/a%2eb", "/api/products/a.b"),  # a dot inside a segment is no dot segment
        (b"/api/products/...", "/api/products/..."),
        (b"/api/products/.well-known", "/api/products/.well-known"),
        (b"/api/products/caf%C3%A9", "/api/products/caf\u00e9"),
        (b"/", "/"),
    ],
)
def test_public_paths_pass_decoded_once(raw: bytes, path: str | None) -> None:
    assert normalise(raw) == (path or raw.decode())


@pytest.mark.parametrize(
    "raw",
    [
        # dot segments, raw and escaped in any case and mix
        b"/api/products/../../internal/products/lookup",
        b"/api/products/%2e%2e/%2e%2e/internal/products/lookup",
        b"/api/products/%2E%2E/%2E%2E/internal/products/lookup",
        b"/api/products/.%2e/.%2E/internal/products/lookup",
        b"/api/products/%2e./%2E./internal/products/lookup",
        b"/api/products/../../metrics",
        b"/api/orders/../../metrics",
        b"/api/auth/../../readyz",
        b"/api/payments/webhooks/../../payments",
        b"/api/payments/webhooks/%2e%2e/%2e%2e/payments",
        b"/api/products/./x",
        b"/api/products/%2e/x",
        b"/api/products/x/..",
        b"/api/products/x/.",
        b"/..",
        # encoded slash and backslash, raw backslash
        b"/api/products%2f..%2f..%2finternal/products/lookup",
        b"/api/products/%2F..%2Finternal",
        b"/api/products/..%5c..%5cinternal/products/lookup",
        b"/api/products/..%5C..%5Cinternal",
        b"/api/products/..\\..\\internal/products/lookup",
        # double encoding: a second decoder behind would see %2e
        b"/api/products/%252e%252e/%252e%252e/internal/products/lookup",
        b"/api/products/%252f",
        # path parameters (Tomcat's ..;/), raw or escaped
        b"/api/products/..;/..;/internal/products/lookup",
        b"/api/products/x;jsessionid=1",
        b"/api/products/x%3b",
        # empty segments that a proxy behind may merge
        b"/api/products//../internal",
        b"//api/products",
        # control characters, raw or escaped
        b"/api/products/%00",
        b"/api/products/x%0d%0aX-Injected:%201",
        b"/api/products/%7f",
        b"/api/products/\x00",
        b"/api/products/\t",
        # malformed escapes and what is not UTF-8 (overlong dots included)
        b"/api/products/%zz",
        b"/api/products/%",
        b"/api/products/%4",
        b"/api/products/%c0%ae%c0%ae/internal",
        b"/api/products/%ff",
        # characters outside RFC 3986 and targets that are not a path
        b"/api/products/x y",
        b"/api/products/\xc3\xa9",
        b"/api/products/<script>",
        b"/api/products/{id}",
        b"*",
        b"api/products",
        b"",
    ],
)
def test_every_other_spelling_is_refused(raw: bytes) -> None:
    with pytest.raises(BadPath) as refused:
        normalise(raw)
    assert refused.value.status == 400
    assert refused.value.detail.startswith("the request path is refused")


@pytest.mark.parametrize("path", ["/api/products/caf\u00e9", "/docs", "/api/products/a b"])
def test_a_server_without_raw_path_gets_the_path_it_decoded(path: str) -> None:
    assert normalise(raw_path_of(path)) == path


@pytest.mark.parametrize("path", ["/api/products/../../internal/products/lookup", "/x/%41", "/a\\b", "/a;b"])
def test_a_decoded_path_that_was_not_in_normal_form_is_refused_too(path: str) -> None:
    with pytest.raises(BadPath):
        normalise(raw_path_of(path))


@pytest.mark.parametrize("query", [b"", b"page=1&page_size=20", b"q=caf%C3%A9&sort=-price", b"q=a+b%20c%2F"])
def test_queries_pass(query: bytes) -> None:
    check_query(query)


@pytest.mark.parametrize("query", [b"q=%00", b"q=a%0Ab", b"q=%1f", b"q=%7F", b"q=\xc3\xa9", b"q=a b", b"q=\x01"])
def test_queries_with_controls_or_raw_bytes_are_refused(query: bytes) -> None:
    with pytest.raises(BadRequest):
        check_query(query)
