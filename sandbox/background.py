"""A daemon thread with an asyncio loop of its own, for a sandbox's work outside requests.

Webhook deliveries, their retries and the session sweeper run here rather than on the serving
loop: a mounted app's lifespan never runs, and a test client may close its loop right after a
request, which would silently cancel a pending retry. The loop starts on first use.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


class BackgroundLoop:
    def __init__(self, name: str) -> None:
        self._name = name
        self._guard = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._on_start: list[Callable[[], Coroutine[Any, Any, None]]] = []
        self._on_stop: list[Callable[[], Awaitable[None]]] = []

    def on_start(self, job: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Run `job` as a task of the loop each time it starts (a periodic job loops forever)."""
        self._on_start.append(job)

    def on_stop(self, cleanup: Callable[[], Awaitable[None]]) -> None:
        self._on_stop.append(cleanup)

    @property
    def running(self) -> bool:
        return self._loop is not None

    def loop(self) -> asyncio.AbstractEventLoop:
        with self._guard:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                self._thread = threading.Thread(target=self._run, args=(loop,), name=self._name, daemon=True)
                self._thread.start()
                self._loop = loop
            return self._loop

    def submit(self, work: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        return asyncio.run_coroutine_threadsafe(work, self.loop())

    def call_soon(self, callback: Callable[..., object], *args: object) -> None:
        self.loop().call_soon_threadsafe(callback, *args)

    def _run(self, loop: asyncio.AbstractEventLoop) -> None:
        asyncio.set_event_loop(loop)
        for job in self._on_start:
            loop.create_task(job())
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(self._stop(loop))
            loop.close()

    async def _stop(self, loop: asyncio.AbstractEventLoop) -> None:
        tasks = [task for task in asyncio.all_tasks(loop) if task is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for cleanup in self._on_stop:
            await cleanup()

    def close(self) -> None:
        """Stop the thread; what was waiting (retries not yet due) stays where it is stored."""
        with self._guard:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if loop is not None and thread is not None:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=5)
