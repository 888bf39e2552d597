"""The unit of work: one transaction in which a state change, the events it emits (outbox) and the
message that caused it (inbox) commit together or not at all.

A use case is a function of a unit of work. Routes get one from `shopkit.webapp.get_uow`, event handlers
from the kit's consumer (which also records the inbox and commits), jobs and commands from
`unit_of_work(db)`."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime

from sqlalchemy.orm import Session

from contracts import Envelope, EventData, new_envelope
from shopkit import tracing
from shopkit.db import Database
from shopkit.outbox import add_to_outbox


class UnitOfWork:
    def __init__(
        self,
        session: Session,
        *,
        producer: str,
        after_commit: Callable[[], None] | None = None,
        causation: Envelope | None = None,
        read_only: bool = False,
    ) -> None:
        self.session = session
        # On a read-only session (see Database.read_sessions) nothing may be written.
        self.read_only = read_only
        self.producer = producer
        # The message being handled: events emitted now are caused by it and share its correlation id.
        self.causation = causation
        # For a handler of a batch: which envelope carried each event object it was given.
        self.causations: Mapping[int, Envelope] = {}
        self._after_commit = after_commit
        # Emitted events wait here and go into the outbox with the commit, in one statement.
        self._outbox: list[tuple[Envelope, datetime]] = []

    def emit(
        self,
        data: EventData,
        *,
        correlation_id: str | uuid.UUID | None = None,
        caused_by: EventData | None = None,
    ) -> Envelope:
        """Put an event in this transaction's outbox (written at commit); the relay publishes it after.
        `caused_by`: in a batch handler, the event (as the handler received it) this one answers."""
        self._writable()
        if caused_by is not None:
            # A batch handler runs outside any one event's trace: follow the event it answers.
            causation = self.causation_of(caused_by)
            traceparent = causation.traceparent if causation else tracing.current_traceparent()
        else:
            causation = self.causation
            traceparent = tracing.current_traceparent(causation.traceparent if causation else None)
        envelope = new_envelope(
            data,
            producer=self.producer,
            correlation_id=correlation_id or (causation.correlation_id if causation else None),
            causation_id=causation.id if causation else None,
            traceparent=traceparent,
        )
        self._outbox.append((envelope, datetime.now(UTC)))
        return envelope

    def causation_of(self, event: EventData) -> Envelope | None:
        """The envelope that carried `event` (as a handler, batch or not, was given it)."""
        return self.causations.get(id(event), self.causation)

    def _writable(self) -> None:
        if self.read_only:
            raise RuntimeError("a read-only unit of work cannot write")

    def commit(self) -> None:
        self._writable()
        emitted, self._outbox = self._outbox, []
        add_to_outbox(self.session, emitted)
        self.session.commit()
        if emitted and self._after_commit:
            self._after_commit()

    def rollback(self) -> None:
        self.session.rollback()
        self._outbox = []


@contextmanager
def unit_of_work(db: Database, causation: Envelope | None = None, *, read_only: bool = False) -> Iterator[UnitOfWork]:
    """A unit of work on its own session; whatever is not committed when the block ends is rolled back.
    `read_only`: for a use case that only reads (see Database.read_sessions)."""
    with (db.read_sessions if read_only else db.sessions)() as session:
        uow = UnitOfWork(
            session, producer=db.service, after_commit=db.outbox_written, causation=causation, read_only=read_only
        )
        try:
            yield uow
        except BaseException:
            uow.rollback()
            raise
