"""The services' HTTP server writes a response's head and body in one send."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import uvicorn
from uvicorn.server import ServerState

from shopkit.sends import OneSendPerTurn
from shopkit.serve import CoalescingHttpToolsProtocol

pytestmark = pytest.mark.unit


class RecordingTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.closed = False
        self.aborted = False

    def write(self, data: Any) -> None:
        self.writes.append(bytes(data))

    def is_closing(self) -> bool:
        return self.closed or self.aborted

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted = True

    def get_write_buffer_size(self) -> int:
        return 0

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 50000), "sockname": ("127.0.0.1", 8000)}.get(name, default)

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


async def _one_turn() -> None:
    await asyncio.sleep(0)
    await asyncio.sleep(0)


async def test_writes_within_one_turn_leave_in_one_send_in_order() -> None:
    transport = RecordingTransport()
    writer = OneSendPerTurn(transport, asyncio.get_running_loop())
    writer.write(b"head;")
    writer.write(bytearray(b"body"))
    assert transport.writes == []
    await _one_turn()
    assert transport.writes == [b"head;body"]
    writer.write(b"next")
    await _one_turn()
    assert transport.writes == [b"head;body", b"next"]


async def test_close_sends_what_waits_first_and_abort_drops_it() -> None:
    loop = asyncio.get_running_loop()
    closing, aborting = RecordingTransport(), RecordingTransport()
    OneSendPerTurn(closing, loop).write(b"last words")
    writer = OneSendPerTurn(closing, loop)
    writer.write(b"bye")
    writer.close()
    assert closing.writes == [b"bye"] and closing.closed
    await _one_turn()
    assert closing.writes == [b"bye"]  # "last words", due after the close, are not written to it
    dropped = OneSendPerTurn(aborting, loop)
    dropped.write(b"never")
    dropped.abort()
    await _one_turn()
    assert aborting.writes == [] and aborting.aborted


async def test_a_large_write_goes_out_at_once() -> None:
    transport = RecordingTransport()
    writer = OneSendPerTurn(transport, asyncio.get_running_loop())
    writer.write(b"h")
    writer.write(b"x" * 70_000)
    assert transport.writes == [b"h" + b"x" * 70_000]
    await _one_turn()
    assert len(transport.writes) == 1


async def _app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    assert scope["type"] == "http"
    await receive()
    body = b'{"ok":true}'
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def test_uvicorn_answers_a_request_with_one_send() -> None:
    config = uvicorn.Config(_app, log_level="warning", access_log=False, lifespan="off")
    config.load()
    protocol = CoalescingHttpToolsProtocol(config, ServerState(), {}, _loop=asyncio.get_running_loop())
    transport = RecordingTransport()
    protocol.connection_made(transport)
    protocol.data_received(b"GET /thing HTTP/1.1\r\nHost: shop\r\n\r\n")
    for _ in range(20):
        if transport.writes:
            break
        await asyncio.sleep(0.01)
    await _one_turn()
    assert len(transport.writes) == 1, transport.writes
    head, _, body = transport.writes[0].partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK") and b"content-length: 11" in head
    assert body == b'{"ok":true}'
    protocol.connection_lost(None)
