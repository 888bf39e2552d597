"""Start one service under uvicorn: `python -m <service> [--host H] [--port P] [--reuse-port]`."""

from __future__ import annotations

import argparse
import asyncio
import gc
import socket
import sys
from collections.abc import Callable

import uvicorn
from fastapi import FastAPI
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from shopkit.sends import OneSendPerTurn

KEEP_ALIVE_SECONDS = 75


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
