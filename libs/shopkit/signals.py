"""Wake-ups after a commit, within one process: a use case marks keys (an order's id) in its unit of
work, and once that transaction commits whoever watches one of those keys is woken, a thread or a
coroutine alike. This only shortens waits: a watcher still reads the database for the truth, and reads
it again now and then, because the commit it waits for may happen in another replica."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Hashable, Iterable
from types import TracebackType
from typing import Any

from sqlalchemy import event
from sqlalchemy.orm import Session, sessionmaker

from shopkit.uow import UnitOfWork


class Watch:
    """One waiter on one key, registered before it reads (so a commit in between is not missed)."""

    def __init__(self, signal: CommitSignal, key: Hashable) -> None:
        self._signal = signal
        self.key = key
        self._fired = threading.Event()
        try:
            self._loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            self._loop = None
        self._fired_async = asyncio.Event() if self._loop is not None else None

    def fire(self) -> None:
        self._fired.set()
        if self._loop is not None and self._fired_async is not None:
            try:
                self._loop.call_soon_threadsafe(self._fired_async.set)
            except RuntimeError:  # the loop is closed: nobody is waiting any more
                pass

    def wait(self, within: float) -> bool:
        """Block this thread until woken (True, and re-armed) or for `within` seconds (False)."""
        fired = self._fired.wait(within)
        self._fired.clear()
        return fired

    async def wait_async(self, within: float) -> bool:
        """The same for a coroutine, without holding a thread meanwhile."""
        assert self._fired_async is not None, "watch() from a coroutine to wait in one"
        try:
            async with asyncio.timeout(within):
                await self._fired_async.wait()
        except TimeoutError:
            return False
        self._fired_async.clear()
        self._fired.clear()
        return True

    def __enter__(self) -> Watch:
        return self

    def __exit__(self, *_: type[BaseException] | BaseException | TracebackType | None) -> None:
        self._signal.unwatch(self)


class CommitSignal:
    def __init__(self, name: str) -> None:
        self._info_key = f"shopkit.signal.{name}"
        self._lock = threading.Lock()
        self._watches: dict[Hashable, set[Watch]] = {}

    def listen(self, sessions: sessionmaker[Session]) -> None:
        """Fire for the commits of this service's sessions."""
        event.listen(sessions, "after_commit", self._after_commit)
        event.listen(sessions, "after_rollback", self._after_rollback)

    def mark(self, uow: UnitOfWork, keys: Iterable[Hashable]) -> None:
        """Wake the watchers of `keys` once this unit of work commits (never if it rolls back)."""
        uow.session.info.setdefault(self._info_key, set()).update(keys)

    def watch(self, key: Hashable) -> Watch:
        watch = Watch(self, key)
        with self._lock:
            self._watches.setdefault(key, set()).add(watch)
        return watch

    def unwatch(self, watch: Watch) -> None:
        with self._lock:
            watches = self._watches.get(watch.key)
            if watches is not None:
                watches.discard(watch)
                if not watches:
                    del self._watches[watch.key]

    def fire(self, keys: Iterable[Hashable]) -> None:
        with self._lock:
            woken = [watch for key in keys for watch in self._watches.get(key, ())]
        for watch in woken:
            watch.fire()

    def _after_commit(self, session: Session) -> None:
        keys = session.info.pop(self._info_key, None)
        if keys:
            self.fire(keys)

    def _after_rollback(self, session: Session, *_: Any) -> None:
        session.info.pop(self._info_key, None)
