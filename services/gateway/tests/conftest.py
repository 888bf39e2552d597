from __future__ import annotations

import http.client
import json
import socket
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import uvicorn

from shopkit.settings import KitSettings
from shopkit.testing import ServerThread, mint_access_token


@pytest.fixture
def kit_settings(tmp_path: Path) -> KitSettings:
    return KitSettings(var_dir=tmp_path)


@pytest.fixture
def mint(kit_settings: KitSettings) -> Callable[..., str]:
    def _mint(role: str = "customer", sub: uuid.UUID | None = None, **overrides: object) -> str:
        return mint_access_token(kit_settings, role=role, user_id=sub, **overrides)

    return _mint


@dataclass
class RawResponse:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def send_raw(
    url: str,
    method: str,
    target: bytes,
    headers: dict[str, str] | None = None,
    body: bytes = b"",
    *,
    source: str | None = None,
) -> RawResponse:
    """One request over a new connection, its target byte for byte as given (http clients such as
    httpx and requests resolve dot segments before sending, as an attacker's curl --path-as-is does not)."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    lines = [method.encode() + b" " + target + b" HTTP/1.1", f"Host: {host}:{port}".encode(), b"Connection: close"]
    lines += [f"{name}: {value}".encode("latin-1") for name, value in (headers or {}).items()]
    if body or method in ("POST", "PUT", "PATCH"):
        lines.append(f"Content-Length: {len(body)}".encode())
    with socket.create_connection((host, port), timeout=15, source_address=(source, 0) if source else None) as sock:
        sock.sendall(b"\r\n".join(lines) + b"\r\n\r\n" + body)
        response = http.client.HTTPResponse(sock, method=method)
        response.begin()
        return RawResponse(response.status, {k.lower(): v for k, v in response.getheaders()}, response.read())


@pytest.fixture
def raw() -> Callable[..., RawResponse]:
    return send_raw


class GatewayServer(ServerThread):
    """The gateway under uvicorn as `python -m gateway` runs it: uvicorn must not take the client's
    address from X-Forwarded-For (its default for a peer at 127.0.0.1)."""

    def __init__(self, app: object) -> None:
        super().__init__(app)
        config = uvicorn.Config(app, log_level="warning", access_log=False, proxy_headers=False)  # type: ignore[arg-type]
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.socket]}, daemon=True)


def _serving() -> Iterator[Callable[[object], str]]:
    with ExitStack() as stack:

        def start(app: object) -> str:
            return stack.enter_context(GatewayServer(app)).url

        yield start


@pytest.fixture
def serve_gateway() -> Iterator[Callable[[object], str]]:
    """Serves gateway apps as `python -m gateway` does, for the test's duration; gives each one's URL."""
    yield from _serving()


@pytest.fixture(scope="module")
def serve_module_gateway() -> Iterator[Callable[[object], str]]:
    """The same, for the module's duration."""
    yield from _serving()
