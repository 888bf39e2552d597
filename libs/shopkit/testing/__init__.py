"""Test support shared by every service's tests: real PostgreSQL and RabbitMQ, from environment URLs
(SHOP_TEST_DATABASE_URL, SHOP_TEST_AMQP_URL), else from testcontainers where a Docker engine answers.
Where neither is available a test needing them is skipped locally and FAILS under CI."""

from __future__ import annotations

import os
import random
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit, urlunsplit

import httpx
import jwt
import psycopg2
import pytest
from psycopg2 import sql

from shopkit.auth import load_keys
from shopkit.provision import provision
from shopkit.settings import KitSettings


def _docker_answers() -> bool:
    try:
        import docker  # type: ignore[import-untyped]

        docker.from_env(timeout=2).ping()  # type: ignore[attr-defined]
        return True
    except Exception:
        return False


def infrastructure_missing(what: str) -> None:
    message = f"{what} is not available: set SHOP_TEST_DATABASE_URL / SHOP_TEST_AMQP_URL or run a Docker engine"
    if os.environ.get("CI"):
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


_containers: dict[str, object] = {}


def postgres_server_url() -> str:
    url = os.environ.get("SHOP_TEST_DATABASE_URL")
    if url:
        return url
    if "pg" not in _containers and _docker_answers():
        from testcontainers.postgres import PostgresContainer

        container = PostgresContainer("postgres:16-alpine")
        container.start()
        _containers["pg"] = container
    if "pg" in _containers:
        return _containers["pg"].get_connection_url().replace("+psycopg2", "")  # type: ignore[attr-defined]
    infrastructure_missing("PostgreSQL")
    raise AssertionError("unreachable")


def amqp_url() -> str:
    url = os.environ.get("SHOP_TEST_AMQP_URL")
    if url:
        return url
    if "mq" not in _containers and _docker_answers():
        from testcontainers.rabbitmq import RabbitMqContainer

        container = RabbitMqContainer("rabbitmq:3.13-alpine")
        container.start()
        _containers["mq"] = container
    if "mq" in _containers:
        c = _containers["mq"]
        return f"amqp://guest:guest@{c.get_container_host_ip()}:{c.get_exposed_port(5672)}/"  # type: ignore[attr-defined]
    infrastructure_missing("RabbitMQ")
    raise AssertionError("unreachable")


def with_database(server_url: str, name: str) -> str:
    parts = urlsplit(server_url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, ""))


@contextmanager
def fresh_database(services: tuple[str, ...] = ("auth", "catalog", "orders", "payments")) -> Iterator[str]:
    """A new database with the per-service schemas and roles; dropped afterwards. Yields its admin URL."""
    server = postgres_server_url()
    name = f"shop_test_{uuid.uuid4().hex[:10]}"
    admin_url = with_database(server, name)
    provision(admin_url, services=services)
    try:
        yield admin_url
    finally:
        connection = psycopg2.connect(with_database(server, "postgres"))
        connection.autocommit = True
        with connection.cursor() as cursor:
            cursor.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        connection.close()


def mint_access_token(
    settings: KitSettings,
    *,
    role: str = "customer",
    user_id: uuid.UUID | None = None,
    expires_in: timedelta = timedelta(minutes=15),
    **overrides: object,
) -> str:
    """An access token as the auth service issues it, signed with the key pair the kit loads; claims
    in `overrides` replace the defaults (a wrong issuer, an old exp) for refusal tests."""
    keys = load_keys(settings)
    assert keys.private_pem is not None, "no private key: the development key pair lives under var_dir"
    now = datetime.now(UTC)
    claims: dict[str, object] = {
        "sub": str(user_id or uuid.uuid4()),
        "role": role,
        "iat": int(now.timestamp()),
        "exp": int((now + expires_in).timestamp()),
        "iss": settings.jwt_issuer,
        "aud": settings.jwt_audience,
        "jti": uuid.uuid4().hex,
    }
    claims.update(overrides)
    return jwt.encode(claims, keys.private_pem, algorithm=keys.algorithm, headers={"kid": keys.kid})


def ephemeral_port_floor(default: int = 32768) -> int:
    """The first port the kernel hands out as a client's source port."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as ports:
            return int(ports.read().split()[0])
    except (OSError, ValueError, IndexError):
        return default


# One client for the tests' plain-HTTP calls to local servers: `httpx.post(...)` builds a client, and
# with it an SSL context that loads the CA bundle, for every call (a sixth of a payments test's time).
# No kept-alive connections, so that a test never meets a socket of a server an earlier one stopped.
local_http = httpx.Client(timeout=30.0, limits=httpx.Limits(max_keepalive_connections=0))


def free_port(start: int = 20000) -> int:
    """A loopback port free now, below the ephemeral range: a client polling a port in that range
    before its server listens can be given the same port as its source and connect to itself (it
    reads back its own request), and the server then cannot bind it."""
    stop = max(start + 2000, ephemeral_port_floor())
    for _ in range(200):
        port = random.randrange(start, stop)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port found")


class ServerThread:
    """Runs an ASGI app under uvicorn in a background thread, for tests that need real HTTP.

    The socket is bound before the server starts, so no other process can take a free port between
    its choice and its use. `lifespan="off"` serves an app whose lifespan must not be relied on (a
    mounted sub-app's never runs)."""

    def __init__(self, app: object, port: int | None = None, *, lifespan: str = "on") -> None:
        import uvicorn

        self.socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.socket.bind(("127.0.0.1", port or 0))
        self.port = int(self.socket.getsockname()[1])
        config = uvicorn.Config(app, log_level="warning", lifespan=lifespan, access_log=False)  # type: ignore[arg-type]
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.socket]}, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> ServerThread:
        self.thread.start()
        deadline = time.time() + 30
        while not self.server.started:
            if time.time() > deadline or not self.thread.is_alive():
                raise RuntimeError("test server did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)
        self.socket.close()
