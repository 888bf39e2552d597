"""Stripe events and their webhook deliveries as the sandbox keeps them."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

# Delivery states: pending (being delivered or waiting for a retry), delivered, failed (the retry
# schedule ran out), dropped (the `drop` fault control), disabled (no webhook URL configured) or
# cancelled (the sandbox was reset).
PENDING = "pending"


@dataclass
class DeliveryAttempt:
    at: float
    url: str
    status_code: int | None
    error: str | None
    duration_ms: int

    @property
    def succeeded(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "succeeded": self.succeeded}


@dataclass
class Delivery:
    """How an event is being sent to the webhook endpoint."""

    status: str
    # Wall-clock time of the next attempt, so a restarted sandbox resumes the schedule.
    next_attempt_at: float = 0.0
    # How many more successful deliveries are owed (2 under the `duplicate` fault control).
    copies: int = 1
    # Failed attempts of the scheduled delivery so far: the index into the retry schedule.
    failures: int = 0
    # Waiting for a newest-first batch (the `reverse` fault control).
    held: bool = False
    attempts: list[DeliveryAttempt] = field(default_factory=list)

    def to_state(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Delivery:
        return cls(**{**state, "attempts": [DeliveryAttempt(**a) for a in state["attempts"]]})


@dataclass
class EventRecord:
    """An event and, when it is meant for the webhook endpoint, how its delivery went.

    The body is serialised once: every delivery sends the same bytes, as Stripe does, and only the
    signature's timestamp changes.
    """

    id: str
    type: str
    created: int
    payload: dict[str, Any]
    body: str
    # None when the endpoint is not subscribed to this type: the event is only in GET /v1/events.
    delivery: Delivery | None = None

    def to_state(self) -> dict[str, Any]:
        return {"id": self.id, "type": self.type, "created": self.created, "body": self.body}

    @classmethod
    def from_state(cls, state: dict[str, Any], delivery: Delivery | None) -> EventRecord:
        payload = json.loads(state["body"])
        return cls(state["id"], state["type"], state["created"], payload, state["body"], delivery)

    def api_json(self) -> dict[str, Any]:
        """The event as `GET /v1/events` shows it now (`pending_webhooks` changes as deliveries go)."""
        pending = 1 if self.delivery is not None and self.delivery.status == PENDING else 0
        return {**self.payload, "pending_webhooks": pending}

    def control_json(self) -> dict[str, Any]:
        delivery = self.delivery
        return {
            "id": self.id,
            "type": self.type,
            "created": self.created,
            "delivery_status": delivery.status if delivery else None,
            "attempts": [attempt.to_json() for attempt in delivery.attempts] if delivery else [],
            "event": self.api_json(),
        }
