"""/readyz names what is down but never an exception's text (it names hosts, roles and ports)."""

from __future__ import annotations

import logging

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from shopkit.observability import health_router

pytestmark = pytest.mark.unit


async def ok() -> str | None:
    return None


async def broker_down() -> str | None:
    return "not connected to the message broker"


async def database_raises() -> str | None:
    raise ConnectionError('connection to server at "db.internal" (10.0.0.5), port 5432 failed: role "shop_auth"')


def test_a_raising_check_is_answered_unavailable_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    app = FastAPI()
    app.include_router(health_router({"database": database_raises, "broker": broker_down, "disk": ok}))
    with caplog.at_level(logging.WARNING, logger="shopkit.observability"), TestClient(app) as client:
        ready = client.get("/readyz")
    assert ready.status_code == 503
    assert ready.json() == {
        "status": "unavailable",
        "checks": {"database": "unavailable", "broker": "not connected to the message broker"},
    }
    for leak in ("db.internal", "10.0.0.5", "5432", "shop_auth", "ConnectionError"):
        assert leak not in ready.text
    logged = [r for r in caplog.records if r.name == "shopkit.observability"]
    assert logged and logged[0].exc_info is not None
    assert "db.internal" in str(logged[0].exc_info[1])
