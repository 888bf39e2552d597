"""Commit signals: a watcher is woken by the commit of a unit of work that marked its key, never by a
rollback, in a thread or in a coroutine."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from shopkit.db import Database
from shopkit.signals import CommitSignal
from shopkit.uow import unit_of_work

pytestmark = pytest.mark.unit


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database(f"sqlite:///{tmp_path / 'signals.db'}", service="orders")
    with database.engine.begin() as connection:
        connection.execute(text("CREATE TABLE t (x INTEGER)"))
    yield database
    database.dispose()


def write(db: Database, signal: CommitSignal, key: str, *, commit: bool = True) -> None:
    with unit_of_work(db) as uow:
        uow.session.execute(text("INSERT INTO t VALUES (1)"))
        signal.mark(uow, [key])
        if commit:
            uow.commit()
        else:
            uow.rollback()


def test_a_commit_wakes_the_watchers_of_its_keys_and_no_others(db: Database) -> None:
    signal = CommitSignal("test")
    signal.listen(db.sessions)
    with signal.watch("a") as a, signal.watch("b") as b:
        write(db, signal, "a")
        assert a.wait(1.0)
        assert not b.wait(0.05)
        assert not a.wait(0.05)  # re-armed: it fired once


def test_a_rollback_wakes_nobody_and_its_marks_do_not_leak_into_the_next_commit(db: Database) -> None:
    signal = CommitSignal("test")
    signal.listen(db.sessions)
    with signal.watch("a") as a:
        write(db, signal, "a", commit=False)
        assert not a.wait(0.05)
        with unit_of_work(db) as uow:
            uow.session.execute(text("INSERT INTO t VALUES (2)"))
            uow.commit()
        assert not a.wait(0.05)


def test_a_thread_blocked_on_a_watch_is_woken_at_once(db: Database) -> None:
    signal = CommitSignal("test")
    signal.listen(db.sessions)
    with signal.watch("a") as a:
        threading.Timer(0.05, write, (db, signal, "a")).start()
        began = time.monotonic()
        assert a.wait(10.0)
        assert time.monotonic() - began < 5.0


def test_a_coroutine_is_woken_by_a_commit_in_another_thread(db: Database) -> None:
    signal = CommitSignal("test")
    signal.listen(db.sessions)

    async def scenario() -> tuple[bool, bool]:
        with signal.watch("a") as a:
            threading.Timer(0.05, write, (db, signal, "a")).start()
            woken = await a.wait_async(5.0)
            again = await a.wait_async(0.05)
        return woken, again

    assert asyncio.run(scenario()) == (True, False)


def test_an_unwatched_key_is_forgotten(db: Database) -> None:
    signal = CommitSignal("test")
    with signal.watch("a"):
        pass
    assert signal._watches == {}
