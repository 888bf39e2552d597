"""`python -m auth.create_admin` run in-process on the SQLite database (the PostgreSQL run, as a real
subprocess, is in test_auth_flows_postgres.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from auth import create_admin
from auth.models import User
from auth.settings import AuthSettings
from shopkit.db import Database
from shopkit.uow import unit_of_work

pytestmark = pytest.mark.integration


@pytest.fixture
def var_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("SHOP_VAR_DIR", str(tmp_path))
    monkeypatch.delenv("SHOP_DATABASE_URL", raising=False)
    monkeypatch.setenv("SHOP_ADMIN_PASSWORD", "")  # no admin at start-up: only the command makes one
    return tmp_path


def _answers(monkeypatch: pytest.MonkeyPatch, *answers: str) -> None:
    replies: Iterator[str] = iter(answers)
    monkeypatch.setattr(create_admin.getpass, "getpass", lambda _prompt="": next(replies))


def _users() -> dict[str, str]:
    db = Database(AuthSettings().service_database_url("auth"), service="auth")
    try:
        with unit_of_work(db) as uow:
            return {user.email: user.role for user in uow.session.scalars(select(User)).all()}
    finally:
        db.dispose()


def test_prompted_password_creates_an_admin(
    var_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _answers(monkeypatch, "Prompted-Pass-1", "Prompted-Pass-1")
    assert create_admin.main(["--email", "Chief@Example.com"]) == 0
    assert "created admin chief@example.com" in capsys.readouterr().out
    assert _users() == {"chief@example.com": "admin"}


def test_mismatched_or_short_passwords_create_nothing(
    var_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _answers(monkeypatch, "Prompted-Pass-1", "Prompted-Pass-2")
    assert create_admin.main(["--email", "chief@example.com"]) == 2
    assert create_admin.main(["--email", "chief@example.com", "--password", "short"]) == 2
    assert create_admin.main(["--email", "not-an-email", "--password", "long-enough-1"]) == 2
    err = capsys.readouterr().err
    assert "do not match" in err and "at least 8" in err and "valid email" in err
    assert "short" not in err
    assert _users() == {}


def test_an_existing_customer_is_promoted(
    var_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert create_admin.main(["--email", "first@example.com", "--password", "First-Pass-1"]) == 0
    assert create_admin.main(["--email", "first@example.com", "--password", "Other-Pass-1"]) == 0
    assert "already an admin (password unchanged)" in capsys.readouterr().out
    assert _users() == {"first@example.com": "admin"}
