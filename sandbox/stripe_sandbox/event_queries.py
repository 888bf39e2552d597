"""`GET /v1/events` and `GET /v1/events/{id}`, with Stripe's filters and paging.

Events are kept in the order they were made, which is also the order of their `created`, so a
`created` lower bound ends the scan early: a reconciler asking for what is new since its last look
reads only the recent events, however many older ones there are.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from sandbox.stripe_sandbox import params as p
from sandbox.stripe_sandbox.account import StripeAccount
from sandbox.stripe_sandbox.errors import StripeError, parameter_invalid, parameter_unknown
from sandbox.stripe_sandbox.events import EventRecord
from sandbox.stripe_sandbox.lists import list_page, paging

EVENT_LIST_PARAMS = frozenset(
    {"created", "delivery_success", "ending_before", "expand", "limit", "starting_after", "type", "types"}
)
MAX_TYPES = 20
_BOUNDS = ("gt", "gte", "lt", "lte")


@dataclass(frozen=True)
class CreatedRange:
    gt: int | None = None
    gte: int | None = None
    lt: int | None = None
    lte: int | None = None

    def below(self, created: int) -> bool:
        """True once `created` is older than the range: every event after it in the scan is too."""
        return (self.gt is not None and created <= self.gt) or (self.gte is not None and created < self.gte)

    def above(self, created: int) -> bool:
        return (self.lt is not None and created >= self.lt) or (self.lte is not None and created > self.lte)


def retrieve_event(account: StripeAccount, event_id: str) -> dict[str, Any]:
    with account.lock:
        return account.event(event_id).api_json()


def list_events(account: StripeAccount, params: dict[str, Any]) -> dict[str, Any]:
    p.reject_unknown(params, EVENT_LIST_PARAMS)
    page = paging(params)
    created = _created_range(params)
    matches_type = _type_filter(params)
    delivered = _delivery_filter(params)
    with account.lock:
        return list_page(
            _matching(account, created, matches_type, delivered),
            page,
            kind="event",
            url="/v1/events",
            render=EventRecord.api_json,
            exists=account.events.__contains__,
        )


def _matching(
    account: StripeAccount, created: CreatedRange, matches_type: Callable[[str], bool], delivered: bool | None
) -> Iterator[EventRecord]:
    for record in reversed(account.events.values()):
        if created.below(record.created):
            return
        if created.above(record.created) or not matches_type(record.type):
            continue
        if delivered is not None and _delivered(record) != delivered:
            continue
        yield record


def _delivered(record: EventRecord) -> bool:
    # Stripe: "all webhooks were successfully delivered"; an event no endpoint wanted counts as such.
    return record.delivery is None or record.delivery.status == "delivered"


def _created_range(params: Mapping[str, Any]) -> CreatedRange:
    value = params.get("created")
    if value is None:
        return CreatedRange()
    if isinstance(value, str):
        exact = p.req_int(params, "created")
        return CreatedRange(gte=exact, lte=exact)
    if not isinstance(value, dict):
        raise parameter_invalid("created", "Invalid created: must be an integer or a hash.")
    for name in value:
        if name not in _BOUNDS:
            raise parameter_unknown(f"created[{name}]")
    bounds = {name: _bound(value, name) for name in _BOUNDS if name in value}
    return CreatedRange(**bounds)


def _bound(value: Mapping[str, Any], name: str) -> int:
    bound = p.opt_int(value, name)
    if bound is None:
        raise parameter_invalid(f"created[{name}]", f"Invalid integer: created[{name}]")
    return bound


def _type_filter(params: Mapping[str, Any]) -> Callable[[str], bool]:
    event_type = p.opt_str(params, "type")
    types = params.get("types")
    if event_type is not None and types is not None:
        raise StripeError(400, "You may only specify one of these parameters: type, types.", param="types")
    if types is not None:
        return _types(types).__contains__
    if event_type is None:
        return lambda name: True
    if "*" not in event_type:
        return event_type.__eq__
    # `charge.*` and the like: the wildcard stands for any run of characters.
    pattern = re.compile(".*".join(re.escape(part) for part in event_type.split("*")))
    return lambda name: pattern.fullmatch(name) is not None


def _types(value: Any) -> frozenset[str]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise parameter_invalid("types", "Invalid array: types must be a list of strings.")
    if len(value) > MAX_TYPES:
        raise parameter_invalid("types", f"Invalid array: types can have at most {MAX_TYPES} entries.")
    return frozenset(value)


def _delivery_filter(params: Mapping[str, Any]) -> bool | None:
    value = p.opt_str(params, "delivery_success")
    if value is None:
        return None
    if value not in ("true", "false"):
        raise parameter_invalid("delivery_success", "Invalid boolean: delivery_success must be true or false.")
    return value == "true"
