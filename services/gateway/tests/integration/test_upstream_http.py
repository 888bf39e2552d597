"""The gateway's HTTP client to the services, against raw servers that answer exactly the bytes a test
gives them: keep-alive reuse, connections the service closed, bodies of every framing, answers cut
short or malformed, HEAD, and requests that could smuggle a line break."""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from gateway.upstream import HttpUpstream, Outbound
from gateway.upstream_http import request_head

pytestmark = pytest.mark.integration

JSON_OK = b'HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 11\r\n\r\n{"ok":true}'


@dataclass
class RawServer:
    """Answers each request it reads with what `answer(request_head_bytes)` gives: bytes, or None to
    close the connection instead."""

    answer: Callable[[bytes], bytes | None]
    close_after: bool = False
    reset_after: bool = False
    connections: int = 0
    requests: list[bytes] = field(default_factory=list)
    port: int = 0

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    (
                        int(line.split(b":")[1])
                        for line in head.split(b"\r\n")
                        if line.lower().startswith(b"content-length")
                    ),
                    0,
                )
                body = await reader.readexactly(length) if length else b""
                self.requests.append(head + body)
                reply = self.answer(head)
                if reply is None:
                    break
                writer.write(reply)
                await writer.drain()
                if self.reset_after:
                    await asyncio.sleep(0.05)
                    sock = writer.get_extra_info("socket")
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    writer.transport.abort()
                    return
                if self.close_after or b"connection: close" in reply.lower().split(b"\r\n\r\n")[0]:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[Callable[[bytes], bytes | None]], Any]]:
    servers: list[asyncio.Server] = []

    async def start(
        answer: Callable[[bytes], bytes | None], *, close_after: bool = False, reset_after: bool = False
    ) -> RawServer:
        raw = RawServer(answer, close_after=close_after, reset_after=reset_after)
        server = await asyncio.start_server(raw._serve, "127.0.0.1", 0)
        raw.port = server.sockets[0].getsockname()[1]
        servers.append(server)
        return raw

    yield start
    for server in servers:
        server.close()
        await server.wait_closed()


async def forward(
    upstream: HttpUpstream, method: str = "GET", path: bytes = b"/api/x", body: bytes = b""
) -> dict[str, Any]:
    messages: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        messages.append(message)

    scope = {"type": "http", "method": method, "query_string": b"", "headers": []}
    outbound = Outbound(path.decode(), path, "127.0.0.1", [(b"x-request-id", b"r1")], body)
    await upstream.forward(scope, outbound, send)
    start = messages[0]
    return {
        "status": start["status"],
        "headers": dict(start["headers"]),
        "body": b"".join(m.get("body", b"") for m in messages[1:]),
        "messages": len(messages),
    }


async def test_one_connection_carries_request_after_request(serve: Any) -> None:
    server = await serve(lambda _head: JSON_OK)
    upstream = HttpUpstream("orders", f"http://127.0.0.1:{server.port}", timeout=2)

    answers = [await forward(upstream) for _ in range(5)]

    assert [a["status"] for a in answers] == [200] * 5
    assert answers[0]["body"] == b'{"ok":true}' and answers[0]["messages"] == 2
    assert server.connections == 1
    first = server.requests[0]
    assert first.startswith(b"GET /api/x HTTP/1.1\r\nhost: 127.0.0.1:")
    assert b"x-request-id: r1\r\n" in first and b"content-length" not in first
    await upstream.close()


async def test_a_post_carries_its_body_and_length(serve: Any) -> None:
    server = await serve(lambda _head: JSON_OK)
    upstream = HttpUpstream("orders", f"http://127.0.0.1:{server.port}", timeout=2)

    await forward(upstream, "POST", body=b'{"items":[]}')
    await forward(upstream, "POST")

    assert server.requests[0].endswith(b"content-length: 12\r\n\r\n" + b'{"items":[]}')
    assert server.requests[1].endswith(b"content-length: 0\r\n\r\n")
    await upstream.close()


async def test_a_connection_the_service_closes_is_not_used_again(serve: Any) -> None:
    closing = JSON_OK.replace(b"content-length: 11", b"connection: close\r\ncontent-length: 11")
    server = await serve(lambda _head: closing)
    upstream = HttpUpstream("orders", f"http://127.0.0.1:{server.port}", timeout=2)

    answers = [await forward(upstream) for _ in range(3)]

    assert [a["status"] for a in answers] == [200] * 3
    assert server.connections == 3
    await upstream.close()


async def test_an_idle_connection_closed_by_the_service_meanwhile_is_replaced(serve: Any) -> None:
    served = 0

    def once_per_connection(_head: bytes) -> bytes | None:
        nonlocal served
        served += 1
        return JSON_OK

    server = await serve(once_per_connection)
    upstream = HttpUpstream("orders", f"http://127.0.0.1:{server.port}", timeout=2)
    await forward(upstream)
    # The service ends the idle connection (a restart, its keep-alive running out).
    for connection in upstream._pool._idle:
        connection.transport.close()  # type: ignore[union-attr]
    await asyncio.sleep(0.05)

    answer = await forward(upstream)

    assert answer["status"] == 200 and server.connections == 2
    await upstream.close()


async def test_chunked_large_and_connection_delimited_bodies_arrive_whole(serve: Any) -> None:
    big = bytes(range(256)) * 1024  # 256 KB, past the one-message size
    chunks = [b"%x\r\n" % 100_000 + big[:100_000] + b"\r\n", b"%x\r\n" % (len(big) - 100_000) + big[100_000:] + b"\r\n"]
    replies = {
        b"/chunked": b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n" + b"".join(chunks) + b"0\r\n\r\n",
        b"/large": b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % len(big) + big,
        b"/until-close": b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\n" + big,
    }
    server = await serve(lambda head: replies[head.split(b" ")[1]])
    upstream = HttpUpstream("orders", f"http://127.0.0.1:{server.port}", timeout=5)

    for path in replies:
        answer = await forward(upstream, path=path)
        assert answer["status"] == 200, path
        assert answer["body"] == big, path
        assert b"transfer-encoding" not in answer["headers"]
    await upstream.close()


async def test_no_content_and_not_modified_have_no_body(serve: Any) -> None:
    replies = {
        b"/204": b"HTTP/1.1 204 No Content\r\n\r\n",
        b"/304": b'HTTP/1.1 304 Not Modified\r\netag: "abc"\r\n\r\n',
    }
    server = await serve(lambda head: replies[head.split(b" ")[1]])
    upstream = HttpUpstream("orders", f"http://127.0.0.1:{server.port}", timeout=2)

    assert (await forward(upstream, path=b"/204"))["status"] == 204
    not_modified = await forward(upstream, path=b"/304")

    assert not_modified["status"] == 304 and not_modified["headers"][b"etag"] == b'"abc"'
    assert not_modified["body"] == b""
    assert server.connections == 1
    await upstream.close()


async def test_head_answers_headers_without_waiting_for_a_body(serve: Any) -> None:
    server = await serve(lambda _head: b"HTTP/1.1 200 OK\r\ncontent-length: 11\r\n\r\n")
    upstream = HttpUpstream("orders", f"http://127.0.0.1:{server.port}", timeout=2)

    answer = await forward(upstream, "HEAD")

    assert answer["status"] == 200 and answer["body"] == b""
    assert answer["headers"][b"content-length"] == b"11"
    await upstream.close()


@pytest.mark.parametrize(
    "reply",
    [
        None,  # closed without a word
        b'HTTP/1.1 200 OK\r\ncontent-length: 50\r\n\r\n{"cut": ',  # closed halfway through the body
        b"NOT HTTP AT ALL\r\n\r\n",
    ],
    ids=["closed", "cut-short", "malformed"],
)
async def test_a_broken_answer_is_a_502_problem(serve: Any, reply: bytes | None) -> None:
    # Each written, then the connection ended: a service that died mid-answer, or is not speaking HTTP.
    server = await serve(lambda _head: reply, close_after=True)
    upstream = HttpUpstream("orders", f"http://127.0.0.1:{server.port}", timeout=2)

    answer = await asyncio.wait_for(forward(upstream), 5)

    assert answer["status"] == 502
    assert answer["headers"][b"content-type"] == b"application/problem+json"
    await upstream.close()


async def test_a_service_that_is_not_there_is_a_502_problem() -> None:
    server = await asyncio.start_server(lambda _r, _w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    upstream = HttpUpstream("orders", f"http://127.0.0.1:{port}", timeout=2)

    answer = await forward(upstream)

    assert answer["status"] == 502
    await upstream.close()


def test_a_line_break_cannot_be_smuggled_into_the_request() -> None:
    with pytest.raises(ValueError):
        request_head("GET", b"/api/x\r\nx-evil: 1", b"orders", [], b"")
    with pytest.raises(ValueError):
        request_head("GET", b"/api/x", b"orders", [(b"x-a", b"1\r\nx-evil: 1")], b"")
    with pytest.raises(ValueError):
        request_head("GET", b"/api/x y", b"orders", [], b"")


async def test_an_informational_answer_is_skipped_for_the_answer_after_it(serve: Any) -> None:
    server = await serve(lambda _head: b"HTTP/1.1 100 Continue\r\n\r\n" + JSON_OK)
    upstream = HttpUpstream("orders", f"http://127.0.0.1:{server.port}", timeout=2)

    answers = [await forward(upstream, "POST", body=b"{}") for _ in range(2)]

    assert [(a["status"], a["body"]) for a in answers] == [(200, b'{"ok":true}')] * 2
    assert server.connections == 1
    await upstream.close()


async def test_a_body_cut_by_a_reset_is_not_taken_as_whole(serve: Any) -> None:
    # No length: the body runs to the end of the connection, which here is a reset, not a close.
    server = await serve(lambda _head: b"HTTP/1.1 200 OK\r\n\r\n" + b"x" * 1000, reset_after=True)
    upstream = HttpUpstream("orders", f"http://127.0.0.1:{server.port}", timeout=2)
    messages: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        messages.append(message)

    scope = {"type": "http", "method": "GET", "query_string": b"", "headers": []}
    try:
        await asyncio.wait_for(upstream.forward(scope, Outbound("/x", b"/x", "127.0.0.1", [], b""), send), 5)
    except Exception:
        pass  # the answer had begun: the client's response is broken off
    start = messages[0]
    if start["status"] == 200:
        assert not any(m["type"] == "http.response.body" and m.get("more_body") is False for m in messages)
    else:
        assert start["status"] == 502
    await upstream.close()


async def test_a_request_that_cannot_be_written_safely_is_a_400_and_never_sent(serve: Any) -> None:
    server = await serve(lambda _head: JSON_OK)
    upstream = HttpUpstream("orders", f"http://127.0.0.1:{server.port}", timeout=2)
    messages: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        messages.append(message)

    scope = {"type": "http", "method": "GET", "query_string": b"", "headers": []}
    smuggling = Outbound("/x", b"/x", "127.0.0.1", [(b"x-a", b"1\r\nx-evil: 1")], b"")
    await upstream.forward(scope, smuggling, send)

    assert messages[0]["status"] == 400
    assert server.requests == [] and server.connections == 0
    await upstream.close()


def test_an_upstream_that_is_not_plain_http_is_refused_when_the_gateway_is_made() -> None:
    for url in ("https://orders:8003", "orders:8003", "http://"):
        with pytest.raises(ValueError, match="plain http"):
            HttpUpstream("orders", url, timeout=1)
