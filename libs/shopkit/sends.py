"""Joining the writes of one turn of the event loop into one send: an HTTP response's head and body
(uvicorn writes them apart), an AMQP consumer's acks and a relay's publishes (aiormq writes every
frame apart)."""

from __future__ import annotations

import asyncio
from typing import Any

# Past this many bytes waiting, a write goes out at once rather than at the end of the loop's turn.
_COALESCE_AT_MOST = 64 * 1024


class OneSendPerTurn:
    """A transport whose writes within one turn of the event loop leave in one send: every write
    would otherwise be a send of its own, a segment of its own (asyncio sets TCP_NODELAY) and a
    wake-up of the reader at the other end."""

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
