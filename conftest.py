"""Fixtures every test folder can use: real PostgreSQL and RabbitMQ (see shopkit.testing)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from shopkit import testing


@pytest.fixture
def pg_url() -> Iterator[str]:
    """Admin URL of a fresh, provisioned database (schemas and roles of every service)."""
    with testing.fresh_database() as url:
        yield url


@pytest.fixture
def amqp_url() -> str:
    return testing.amqp_url()


@pytest.fixture
def bus_namespace() -> str:
    """A prefix that keeps this test's exchange and queues apart from every other run's."""
    return f"t{uuid.uuid4().hex[:8]}."
