"""The kit's sessions on real PostgreSQL: read-only units of work send no BEGIN and refuse writes, and
the pool keeps the connections a burst opened instead of closing them on return."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from threading import Barrier

import pytest
from sqlalchemy import event, text

from shopkit.db import Database
from shopkit.settings import KitSettings
from shopkit.uow import unit_of_work

from .conftest import cancelled

pytestmark = pytest.mark.integration


def in_transaction_on_server(db: Database, *, read_only: bool) -> bool:
    with unit_of_work(db, read_only=read_only) as uow:
        uow.session.execute(text("SELECT 1"))
        raw = uow.session.connection().connection.dbapi_connection
        assert raw is not None
        # psycopg2 opens a server transaction (BEGIN) before the first statement unless in autocommit.
        return bool(raw.get_transaction_status())


def test_a_read_only_unit_of_work_runs_outside_a_transaction(orders_db: Database) -> None:
    assert in_transaction_on_server(orders_db, read_only=False)
    assert not in_transaction_on_server(orders_db, read_only=True)


def test_a_read_only_unit_of_work_refuses_to_write(orders_db: Database) -> None:
    with unit_of_work(orders_db, read_only=True) as uow:
        with pytest.raises(RuntimeError, match="read-only"):
            uow.emit(cancelled())
        with pytest.raises(RuntimeError, match="read-only"):
            uow.commit()


def test_on_sqlite_a_read_only_unit_of_work_reads_as_any_other(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'x.db'}", service="orders")
    try:
        with unit_of_work(db, read_only=True) as uow:
            assert uow.session.execute(text("SELECT 41 + 1")).scalar() == 42
    finally:
        db.dispose()


def test_the_pool_keeps_what_a_burst_opened(pg_url: str) -> None:
    db = Database(KitSettings(database_url=pg_url).service_database_url("orders"), service="orders", pool_size=4)
    opened: list[object] = []
    event.listen(db.engine, "connect", lambda connection, _record: opened.append(connection))
    together = Barrier(8)

    def hold() -> None:
        with db.engine.connect() as connection:
            together.wait(10)
            connection.execute(text("SELECT 1"))

    try:
        for _ in range(3):
            with ThreadPoolExecutor(8) as pool:
                list(pool.map(lambda _: hold(), range(8)))
        # 8 at once fit the pool's ceiling (2 x pool_size); bursts after the first open nothing.
        assert len(opened) == 8
        assert db.engine.pool.checkedin() == 8  # type: ignore[attr-defined]
    finally:
        db.dispose()
