"""The workers that do what a commit left to do: apply stored webhook events, ask providers for refunds
and cancellations. A commit that recorded such work wakes its lane's worker at once (a session hook,
so handlers, routes and jobs need do nothing but record the work); every `sweep_interval` each
worker also looks on its own, the backstop for work left by a process that died between its commit
and the wake-up. Claims make it safe for several replicas to look at once."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from sqlalchemy import event
from sqlalchemy.orm import Session

from payments.context import WAKE_KEY, Lane, PaymentsContext
from payments.flows import cancellations, refunds, stripe_webhooks

log = logging.getLogger("payments.workers")

# A drain that keeps finding work yields after this many rounds, so that stopping stays prompt.
MAX_ROUNDS = 50


class Worker:
    def __init__(self, name: str, drain: Callable[[], int], interval: float) -> None:
        self.name = name
        self.drain = drain
        self.interval = interval
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def wake(self) -> None:
        self._wake.set()

    def start(self) -> None:
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _run(self) -> None:
        # A first round at start: what a previous process left (it died after a commit) goes on now.
        while not self._stopping.is_set():
            for _ in range(MAX_ROUNDS):
                if self._stopping.is_set() or not self._round():
                    break
            # Work committed during the round set the event again: the wait returns at once.
            self._wake.wait(self.interval)
            self._wake.clear()

    def _round(self) -> bool:
        try:
            return self.drain() > 0
        except Exception:
            # The next wake-up or tick tries again; a worker must outlive any one bad round.
            log.exception("a payments worker round failed", extra={"worker": self.name})
            return False


def drain_provider_calls(context: PaymentsContext) -> int:
    return refunds.run_due_refunds(context) + cancellations.run_due_cancellations(context)


class Workers:
    def __init__(self, context: PaymentsContext) -> None:
        interval = context.settings.sweep_interval
        self.lanes = {
            Lane.EVENTS: Worker("payments-events", lambda: stripe_webhooks.process_stored_events(context), interval),
            Lane.PROVIDER: Worker("payments-provider-calls", lambda: drain_provider_calls(context), interval),
        }
        event.listen(context.db.sessions, "after_commit", self._after_commit)
        event.listen(context.db.sessions, "after_rollback", self._after_rollback)

    def _after_commit(self, session: Session) -> None:
        for lane in session.info.pop(WAKE_KEY, ()):
            self.lanes[lane].wake()

    def _after_rollback(self, session: Session, *_: Any) -> None:
        session.info.pop(WAKE_KEY, None)

    def start(self) -> None:
        for worker in self.lanes.values():
            worker.start()

    def stop(self) -> None:
        for worker in self.lanes.values():
            worker.stop()
