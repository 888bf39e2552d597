"""What the payments flows run with: the database, the settings, the providers and the provider log;
and how a unit of work asks for work to be done after its commit (a provider call, a stored webhook
to apply), which the workers pick up within milliseconds."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

from payments.audit import ProviderLog
from payments.providers.registry import ProviderRegistry
from payments.settings import PaymentsSettings
from shopkit.db import Database
from shopkit.signals import CommitSignal
from shopkit.uow import UnitOfWork, unit_of_work

WAKE_KEY = "payments.wake"


class Admission(Protocol):
    def admit(self) -> None:
        """Raise a 503 problem if new work must wait."""


class Lane(StrEnum):
    """Work done after a commit, each lane by its own worker so that a slow provider never holds
    back applying what another provider already said."""

    EVENTS = "events"  # stored webhook events to apply
    PROVIDER = "provider"  # refunds and cancellations to ask the providers for


def wake_after_commit(uow: UnitOfWork, lane: Lane) -> None:
    """The work this unit of work records is picked up as soon as it commits (see workers.py)."""
    uow.session.info.setdefault(WAKE_KEY, set()).add(lane)


@dataclass(frozen=True)
class PaymentsContext:
    db: Database
    settings: PaymentsSettings
    providers: ProviderRegistry
    audit: ProviderLog
    # Refuses new payments while acknowledged webhooks wait too long to be applied (None: never).
    backlog: Admission | None = None
    # Wakes a payment request that came before its order's OrderPlaced (see starting.py) once the
    # batch that records the order commits.
    arrivals: CommitSignal = field(default_factory=lambda: CommitSignal("payments.order-arrived"))

    @contextmanager
    def uow(self) -> Iterator[UnitOfWork]:
        with unit_of_work(self.db) as uow:
            yield uow

    def commit(self, uow: UnitOfWork) -> None:
        """Commit, with the provider log entries the running flow recorded since its last commit."""
        entries = self.audit.add_pending(uow.session)
        try:
            uow.commit()
        except BaseException:
            self.audit.put_back(entries)
            raise
