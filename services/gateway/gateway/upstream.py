"""Forwarding a request to the service that owns its path: over HTTP with a pooled aiohttp client
(httpx's plain pool halves the gateway's throughput), or straight into the service's ASGI app when
everything runs in one process."""

from __future__ import annotations

import asyncio
from typing import Protocol

import aiohttp
from starlette.types import ASGIApp, Scope, Send
from yarl import URL

from gateway.forwarding import HOP_BY_HOP
from shopkit.problems import problem_response

# What a service's answer keeps of its headers: its Content-Length, none of its hop-by-hop ones.
_NOT_RETURNED = HOP_BY_HOP - {b"content-length"}
_WHOLE_BODY_BYTES = 64 * 1024


class Outbound:
    """One request as the gateway passes it on: the path it decided on, the raw target it forwards
    (byte for byte as the client sent it, so nothing behind re-reads it differently), the client
    address it decided on, the headers it keeps, and the seconds the client asked the service to wait
    for a change (`Prefer: wait=N`, a long poll; 0 for none)."""

    __slots__ = ("body", "client", "headers", "path", "raw_path", "wait")

    def __init__(
        self,
        path: str,
        raw_path: bytes,
        client: str,
        headers: list[tuple[bytes, bytes]],
        body: bytes,
        wait: float = 0.0,
    ) -> None:
        self.path = path
        self.raw_path = raw_path
        self.client = client
        self.headers = headers
        self.body = body
        self.wait = wait


class Upstream(Protocol):
    name: str

    async def forward(self, scope: Scope, request: Outbound, send: Send) -> None: ...

    async def get_json(self, path: str) -> object: ...

    async def close(self) -> None: ...


class HttpUpstream:
    def __init__(self, name: str, base_url: str, *, timeout: float, connect_timeout: float = 2.0) -> None:
        self.name = name
        self.base_url = base_url.rstrip("/")
        self.timeout = aiohttp.ClientTimeout(total=timeout, sock_connect=connect_timeout)
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=self.timeout,
                connector=aiohttp.TCPConnector(limit=256, keepalive_timeout=30, ttl_dns_cache=300),
                auto_decompress=False,
                skip_auto_headers=("User-Agent", "Accept-Encoding", "Content-Type"),
            )
        return self._session

    async def forward(self, scope: Scope, request: Outbound, send: Send) -> None:
        target = request.raw_path
        query = scope.get("query_string")
        if query:
            target += b"?" + query
        # encoded=True: yarl would otherwise resolve dot segments and decode escapes, and the service
        # would be asked for another path than the one the gateway decided on.
        url = URL(self.base_url + target.decode("ascii"), encoded=True)
        outgoing = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.headers]
        timeout = self.timeout
        if request.wait:
            timeout = aiohttp.ClientTimeout(
                total=(timeout.total or 0) + request.wait, sock_connect=timeout.sock_connect
            )
        try:
            async with self._client().request(
                scope["method"],
                url,
                data=request.body or None,
                headers=outgoing,
                allow_redirects=False,
                timeout=timeout,
            ) as response:
                response_headers = [(k.lower(), v) for k, v in response.raw_headers if k.lower() not in _NOT_RETURNED]
                await send({"type": "http.response.start", "status": response.status, "headers": response_headers})
                length = response.content_length
                if length is not None and length <= _WHOLE_BODY_BYTES:
                    # Most answers are small JSON: one body message instead of a stream and its end.
                    await send({"type": "http.response.body", "body": await response.read(), "more_body": False})
                    return
                async for chunk in response.content.iter_any():
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
                await send({"type": "http.response.body", "body": b"", "more_body": False})
        except TimeoutError:
            await problem_response(504, f"the {self.name} service did not answer in time")(scope, _no_body, send)
        except aiohttp.ClientError:
            await problem_response(502, f"the {self.name} service is unavailable")(scope, _no_body, send)

    async def get_json(self, path: str) -> object:
        async with self._client().get(self.base_url + path) as response:
            response.raise_for_status()
            return await response.json(content_type=None)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


class AsgiUpstream:
    """The all-in-one mode: the service app runs in this process, so the request goes straight in."""

    def __init__(self, name: str, app: ASGIApp) -> None:
        self.name = name
        self.app = app

    async def forward(self, scope: Scope, request: Outbound, send: Send) -> None:
        body = request.body
        sent = False

        async def receive() -> dict[str, object]:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            await asyncio.Event().wait()  # like a client that keeps the connection open
            return {"type": "http.disconnect"}

        inner = dict(scope)
        inner["path"], inner["raw_path"] = request.path, request.raw_path
        inner["client"] = (request.client, 0)
        inner["headers"] = [*request.headers, (b"content-length", str(len(body)).encode())]
        inner.pop("app", None)
        inner.pop("router", None)
        inner.pop("route", None)
        await self.app(inner, receive, send)

    async def get_json(self, path: str) -> object:
        import httpx

        transport = httpx.ASGITransport(app=self.app)  # type: ignore[arg-type]
        async with httpx.AsyncClient(transport=transport, base_url="http://in-process") as client:
            response = await client.get(path)
            response.raise_for_status()
            return response.json()

    async def close(self) -> None:
        return None


async def _no_body() -> dict[str, object]:
    return {"type": "http.request", "body": b"", "more_body": False}
