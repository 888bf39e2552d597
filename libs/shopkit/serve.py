"""Start one service under uvicorn: `python -m <service> [--host H] [--port P] [--reuse-port]`."""

from __future__ import annotations

import argparse
import asyncio
import gc
import socket
import sys
from collections.abc import Callable
from typing import Any

import uvicorn
from fastapi import FastAPI
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

KEEP_ALIVE_SECONDS = 75
# Past this many bytes waiting, a write goes out at once rather than at the end of the loop's turn.
_COALESCE_AT_MOST = 64 * 1024


class OneSendPerTurn:
    """A transport whose writes within one turn of the event loop leave in one send. uvicorn writes a
    response's head and its body separately: two sends, two segments (asyncio sets TCP_NODELAY) and
    two wake-ups of the reader, for answers that are one small JSON body nearly always."""

    __slots__ = ("_loop", "_pending", "_size", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes] = []
        self._size = 0

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not self._pending:
            self._loop.call_soon(self.flush)
        # A copy of anything mutable: the caller may reuse its buffer once write returns.
        self._pending.append(data if isinstance(data, bytes) else bytes(data))
        self._size += len(data)
        if self._size > _COALESCE_AT_MOST:
            self.flush()

    def flush(self) -> None:
        if not self._pending:
            return
        pending, self._pending, self._size = self._pending, [], 0
        if not self._transport.is_closing():
            self._transport.write(pending[0] if len(pending) == 1 else b"".join(pending))

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size() + self._size

    def write_eof(self) -> None:
        self.flush()
        self._transport.write_eof()

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def abort(self) -> None:
        self._pending, self._size = [], 0
        self._transport.abort()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class CoalescingHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, writing through OneSendPerTurn."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(OneSendPerTurn(transport, self.loop))  # type: ignore[arg-type]


def serve(factory: Callable[[], FastAPI], *, name: str, default_port: int, proxy_headers: bool = True) -> None:
    """`proxy_headers=False` for a process that faces clients itself (the gateway): uvicorn would
    otherwise take the client address from X-Forwarded-For whenever the peer is 127.0.0.1."""
    parser = argparse.ArgumentParser(prog=f"python -m {name}")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=default_port)
    parser.add_argument(
        "--reuse-port",
        action="store_true",
        help="bind with SO_REUSEPORT, so that several processes share the port (the kernel spreads connections)",
    )
    args = parser.parse_args()
    app = factory()
    # Everything imported and built so far lives as long as the process: move it out of the collector's
    # sight, or every full collection under load walks the whole import graph again (tens of ms each).
    gc.collect()
    gc.freeze()
    # And collect the young generation less often: requests allocate many short-lived objects.
    gc.set_threshold(10_000, 20, 20)
    config = uvicorn.Config(
        app,
        host=args.host,
        port=args.port,
        log_level="warning",
        access_log=False,
        http=CoalescingHttpToolsProtocol,
        proxy_headers=proxy_headers,
        # Longer than the callers' idle keep-alive (the gateway's and ServiceClient's 30 s): a server
        # that closes an idle connection first races the caller reusing it, who then reads a reset (502).
        timeout_keep_alive=KEEP_ALIVE_SECONDS,
        timeout_graceful_shutdown=5,
    )
    server = uvicorn.Server(config)
    server.run(sockets=[shared_socket(args.host, args.port)] if args.reuse_port else None)
    if not server.started:
        sys.exit(3)  # what uvicorn.run answers a failed start-up with: the supervisor restarts the process


def shared_socket(host: str, port: int) -> socket.socket:
    """A listening socket that other processes of this user may bind too (Linux balances new
    connections across them). Bound and listening before the app starts, so a replica that is
    starting already queues its share of connections instead of refusing them."""
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(address)
    sock.listen(2048)
    return sock
