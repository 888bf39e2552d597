"""Forwarding a request to the service that owns its path: over HTTP on pooled keep-alive connections
(gateway.upstream_http), or straight into the service's ASGI app when everything runs in one process."""

from __future__ import annotations

import asyncio
import json
from typing import Protocol

from starlette.types import ASGIApp, Scope, Send

from gateway.forwarding import HOP_BY_HOP
from gateway.upstream_http import ConnectionPool, UpstreamError, request_head
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
        self.timeout = timeout
        self._pool = ConnectionPool(base_url.rstrip("/"), connect_timeout=connect_timeout)

    async def forward(self, scope: Scope, request: Outbound, send: Send) -> None:
        target = request.raw_path
        query = scope.get("query_string")
        if query:
            target += b"?" + query
        method = scope["method"]
        try:
            # The raw target as the gateway decided on it: nothing re-reads its dot segments or escapes.
            message = request_head(method, target, self._pool.authority, request.headers, request.body)
        except ValueError as exc:
            await problem_response(400, str(exc))(scope, _no_body, send)
            return
        started = False
        try:
            async with asyncio.timeout(self.timeout + request.wait), self._pool.connection() as connection:
                answer = await connection.send_request(message, head_only=method == "HEAD")
                # Most answers are small JSON: read whole, they go in one body message instead of a stream.
                whole = answer.length is not None and answer.length <= _WHOLE_BODY_BYTES
                body = await connection.body() if whole else b""
                headers = [(k, v) for k, v in answer.headers if k not in _NOT_RETURNED]
                await send({"type": "http.response.start", "status": answer.status, "headers": headers})
                started = True
                if not whole:

                    async def deliver(chunk: bytes) -> None:
                        await send({"type": "http.response.body", "body": chunk, "more_body": True})

                    await connection.stream(deliver)
                await send({"type": "http.response.body", "body": body, "more_body": False})
        except TimeoutError:
            if started:
                raise
            await problem_response(504, f"the {self.name} service did not answer in time")(scope, _no_body, send)
        except UpstreamError:
            if started:
                raise
            await problem_response(502, f"the {self.name} service is unavailable")(scope, _no_body, send)

    async def get_json(self, path: str) -> object:
        accept = [(b"accept", b"application/json")]
        message = request_head("GET", path.encode("ascii"), self._pool.authority, accept, b"")
        async with asyncio.timeout(self.timeout), self._pool.connection() as connection:
            answer = await connection.send_request(message, head_only=False)
            body = await connection.body()
        if answer.status >= 400:
            raise UpstreamError(f"GET {path} answered {answer.status}")
        return json.loads(body)

    async def close(self) -> None:
        self._pool.close()


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
