"""HTTP/1.1 to the shop's own services, kept to what the gateway needs: one request at a time per
pooled keep-alive connection, the request written in one send, the answer parsed by httptools (the
parser uvicorn uses) and handed over as ASGI messages. The services are known and answer with a
Content-Length or chunked bodies, so none of a general client's work (cookies, redirects, URL
parsing, content decoding, tracing hooks) is done per request."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from urllib.parse import urlsplit

import httptools

# An idle connection is closed after this long: less than the services' keep-alive (75 s), so the
# gateway never reuses a connection the service is about to close.
IDLE_SECONDS = 30.0
# A streamed answer stops reading from the service while this much waits for the client.
_HIGH_WATER = 256 * 1024


class UpstreamError(Exception):
    """The service could not be reached, or broke the connection before answering."""


class Answer:
    """The service's status and headers; the body follows from `Connection.body()`."""

    __slots__ = ("headers", "length", "status")

    def __init__(self, status: int, headers: list[tuple[bytes, bytes]], length: int | None) -> None:
        self.status = status
        self.headers = headers
        self.length = length


class Connection(asyncio.Protocol):
    """One keep-alive connection to a service."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.idle_since = 0.0
        self._parser = httptools.HttpResponseParser(self)
        self._loop = asyncio.get_running_loop()
        self._head: asyncio.Future[Answer] | None = None
        self._headers: list[tuple[bytes, bytes]] = []
        self._chunks: list[bytes] = []
        self._buffered = 0
        self._data = asyncio.Event()
        self._length: int | None = None
        self._chunked = False
        self._complete = False
        self._failure: Exception | None = None
        self._paused = False
        self._informational = False
        self.reusable = True

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(UpstreamError(f"the service answered with malformed HTTP: {exc}"))
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.reusable = False
        if exc is None and self._head is not None and self._head.done() and not self._complete:
            if self._length is None and not self._chunked:
                # A body delimited by the end of the connection (HTTP/1.1 allows it): it is whole now.
                self.on_message_complete()
                return
        if not self._complete:
            self._fail(UpstreamError("the service closed the connection before answering in full"))

    # httptools callbacks

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        if 100 <= self._parser.get_status_code() < 200:
            # Informational (100 Continue, 103 Early Hints): the answer follows it, on the same connection.
            self._informational = True
            self._headers = []
            return
        length = None
        for name, value in self._headers:
            if name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding":
                self._chunked = b"chunked" in value.lower()
        self._length = length
        if self._head is not None and not self._head.done():
            self._head.set_result(Answer(self._parser.get_status_code(), self._headers, length))

    def on_body(self, body: bytes) -> None:
        self._chunks.append(body)
        self._buffered += len(body)
        self._data.set()
        if self._buffered > _HIGH_WATER and not self._paused and self.transport is not None:
            self._paused = True
            self.transport.pause_reading()

    def on_message_complete(self) -> None:
        if self._informational:
            self._informational = False
            return
        self._complete = True
        if not self._parser.should_keep_alive():
            self.reusable = False
        self._data.set()

    # The exchange

    async def send_request(self, request: bytes, *, head_only: bool) -> Answer:
        """Write the request and wait for the answer's status and headers."""
        assert self.transport is not None
        if self.transport.is_closing():
            raise UpstreamError("the connection to the service is closed")
        self._head = self._loop.create_future()
        self._headers, self._chunks, self._buffered = [], [], 0
        self._length, self._chunked, self._complete, self._failure = None, False, False, None
        self._data.clear()
        self.transport.write(request)
        answer = await self._head
        if head_only:
            # The answer to HEAD has headers only (its Content-Length is the GET's): no body will come,
            # and the parser cannot be told so; this connection is not reused.
            self._complete, self.reusable = True, False
        return answer

    async def body(self) -> bytes:
        """The whole body (for an answer whose length is known and small)."""
        while not self._complete:
            await self._wait()
        body = b"".join(self._chunks)
        self._chunks, self._buffered = [], 0
        return body

    async def stream(self, deliver: Callable[[bytes], Awaitable[None]]) -> None:
        """The body as it arrives, chunk by chunk."""
        while True:
            if self._chunks:
                chunks, self._chunks, self._buffered = self._chunks, [], 0
                if self._paused and self.transport is not None:
                    self._paused = False
                    self.transport.resume_reading()
                await deliver(b"".join(chunks))
                continue
            if self._complete:
                return
            await self._wait()

    async def _wait(self) -> None:
        if self._failure is not None:
            raise self._failure
        self._data.clear()
        await self._data.wait()
        if self._failure is not None and not self._complete:
            raise self._failure

    def _fail(self, exc: Exception) -> None:
        self.reusable = False
        self._failure = exc
        if self._head is not None and not self._head.done():
            self._head.set_exception(exc)
            self._head.exception()  # retrieved: a request that gave up meanwhile must not log it
        self._data.set()

    @property
    def complete(self) -> bool:
        return self._complete

    def close(self) -> None:
        self.reusable = False
        if self.transport is not None:
            self.transport.close()


class ConnectionPool:
    """Keep-alive connections to one service, the most recently used first."""

    def __init__(self, base_url: str, *, connect_timeout: float, limit: int = 256) -> None:
        parts = urlsplit(base_url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"an upstream is a plain http://host:port URL, not {base_url!r}")
        self.host = parts.hostname
        self.port = parts.port or 80
        self.authority = parts.netloc.encode("ascii")
        self.connect_timeout = connect_timeout
        self._idle: list[Connection] = []
        self._slots = asyncio.Semaphore(limit)

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[Connection]:
        """A connection for one exchange; back in the pool afterwards if its answer was read whole."""
        connection = await self.acquire()
        try:
            yield connection
        finally:
            self.release(connection)

    async def acquire(self) -> Connection:
        await self._slots.acquire()  # not inside the try: a wait cancelled here holds no slot
        try:
            now = time.monotonic()
            while self._idle:
                connection = self._idle.pop()
                if connection.reusable and now - connection.idle_since < IDLE_SECONDS:
                    return connection
                connection.close()
            return await self._connect()
        except BaseException:
            self._slots.release()
            raise

    async def _connect(self) -> Connection:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.connect_timeout):
                _, protocol = await loop.create_connection(Connection, self.host, self.port)
        except (OSError, TimeoutError) as exc:
            raise UpstreamError(f"cannot connect: {exc}") from exc
        return protocol

    def release(self, connection: Connection) -> None:
        if connection.reusable and connection.complete:
            connection.idle_since = time.monotonic()
            self._idle.append(connection)
        else:
            connection.close()
        self._slots.release()

    def close(self) -> None:
        for connection in self._idle:
            connection.close()
        self._idle.clear()


def request_head(
    method: str, target: bytes, authority: bytes, headers: list[tuple[bytes, bytes]], body: bytes
) -> bytes:
    """The request line and headers, as one buffer with the body."""
    if any(c in target for c in b" \r\n"):
        raise ValueError("a request target cannot hold spaces or line breaks")
    parts = [method.encode("ascii"), b" ", target, b" HTTP/1.1\r\nhost: ", authority, b"\r\n"]
    for name, value in headers:
        if b"\r" in value or b"\n" in value or b"\r" in name or b"\n" in name or b":" in name:
            raise ValueError("a header cannot hold line breaks, nor its name a colon")
        parts += [name, b": ", value, b"\r\n"]
    if body or method not in ("GET", "HEAD", "DELETE", "OPTIONS"):
        parts += [b"content-length: ", str(len(body)).encode("ascii"), b"\r\n"]
    parts.append(b"\r\n")
    if body:
        parts.append(body)
    return b"".join(parts)
