"""The envelope every event travels in, and the base of every event's payload."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, ClassVar, TypeVar

from pydantic import BaseModel, ConfigDict, Field


class EventData(BaseModel):
    """Payload of one event type. Subclasses name their type and version."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    TYPE: ClassVar[str]
    VERSION: ClassVar[int] = 1


class Envelope(BaseModel):
    """What goes on the wire. `id` is the dedupe key of the consumers' inbox."""

    model_config = ConfigDict(frozen=True)

    id: uuid.UUID = Field(default_factory=uuid.uuid4)
    type: str
    version: int = 1
    occurred_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    producer: str
    correlation_id: str | None = None
    causation_id: str | None = None
    # W3C trace context of the span that emitted the event, so the consumer's work joins its trace.
    traceparent: str | None = None
    data: dict[str, Any]


D = TypeVar("D", bound=EventData)


def new_envelope(
    data: EventData,
    *,
    producer: str,
    correlation_id: str | uuid.UUID | None = None,
    causation_id: str | uuid.UUID | None = None,
    traceparent: str | None = None,
) -> Envelope:
    return Envelope(
        type=data.TYPE,
        version=data.VERSION,
        producer=producer,
        correlation_id=str(correlation_id) if correlation_id is not None else None,
        causation_id=str(causation_id) if causation_id is not None else None,
        traceparent=traceparent,
        data=data.model_dump(mode="json"),
    )


def parse_data(envelope: Envelope, model: type[D]) -> D:
    if envelope.type != model.TYPE:
        raise ValueError(f"envelope of type {envelope.type!r} is not a {model.TYPE}")
    return model.model_validate(envelope.data)
