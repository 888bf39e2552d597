"""The auth schema's migrations on both databases the service runs on, from a schema holding data."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from auth.app import MIGRATIONS
from shopkit.db import Database
from shopkit.migrate import alembic_config, upgrade
from shopkit.settings import KitSettings

pytestmark = pytest.mark.integration

BEFORE_CLIENT_ADDRESSES = "22b09621491e"


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Database:
    url = request.getfixturevalue("pg_url") if request.param == "postgresql" else None
    settings = KitSettings(_env_file=None, database_url=url, var_dir=tmp_path)  # type: ignore[call-arg]
    db = Database(settings.service_database_url("auth"), service="auth")
    request.addfinalizer(db.dispose)
    return db


def test_failures_counted_before_addresses_were_recorded_survive_the_upgrade(database: Database) -> None:
    failed_at = datetime.now(UTC)
    with database.engine.connect() as connection:
        command.upgrade(alembic_config(MIGRATIONS, connection), BEFORE_CLIENT_ADDRESSES)
        connection.commit()
        connection.execute(
            text("INSERT INTO login_failures (id, email, failed_at) VALUES (:id, 'old@example.com', :at)"),
            {"id": str(uuid.uuid4()), "at": failed_at},
        )
        connection.commit()

    upgrade(database, MIGRATIONS)

    with database.engine.connect() as connection:
        rows = connection.execute(text("SELECT email, client_address FROM login_failures")).all()
        assert [tuple(row) for row in rows] == [("old@example.com", "")]
        # The default only carried the old rows over: a new failure must name its address.
        with pytest.raises(IntegrityError):
            connection.execute(
                text("INSERT INTO login_failures (id, email, failed_at) VALUES (:id, 'new@example.com', :at)"),
                {"id": str(uuid.uuid4()), "at": failed_at},
            )


def test_the_address_revision_downgrades_cleanly(database: Database) -> None:
    upgrade(database, MIGRATIONS)
    with database.engine.connect() as connection:
        command.downgrade(alembic_config(MIGRATIONS, connection), BEFORE_CLIENT_ADDRESSES)
        connection.commit()
        columns = connection.execute(text("SELECT * FROM login_failures")).keys()
        assert "client_address" not in columns
