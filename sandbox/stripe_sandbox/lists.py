"""Stripe's list objects: newest first, `limit` (1..100, default 10), `starting_after` / `ending_before`."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from itertools import islice
from typing import Any, Protocol, TypeVar

from sandbox.stripe_sandbox import params as p
from sandbox.stripe_sandbox.errors import parameter_invalid, resource_missing


class HasId(Protocol):
    id: str


T = TypeVar("T", bound=HasId)


@dataclass(frozen=True)
class Paging:
    limit: int
    starting_after: str | None
    ending_before: str | None


def paging(params: Mapping[str, Any]) -> Paging:
    limit = p.opt_int(params, "limit")
    limit = 10 if limit is None else limit
    if not 1 <= limit <= 100:
        raise parameter_invalid("limit", "Invalid limit: must be between 1 and 100", code="parameter_invalid_integer")
    return Paging(limit, p.opt_str(params, "starting_after"), p.opt_str(params, "ending_before"))


def list_page(
    newest_first: Iterable[T],
    paging: Paging,
    *,
    kind: str,
    url: str,
    render: Callable[[T], dict[str, Any]],
    exists: Callable[[str], bool],
) -> dict[str, Any]:
    """One page of `newest_first` (already filtered), read lazily so a page near the top is cheap.

    A cursor must name an existing object of the kind (Stripe answers 400 otherwise), though it may
    be one the filters leave out.
    """
    for name, cursor in (("starting_after", paging.starting_after), ("ending_before", paging.ending_before)):
        if cursor is not None and not exists(cursor):
            raise resource_missing(kind, cursor, param=name)
    if paging.starting_after is not None:
        items, has_more = _after(iter(newest_first), paging.starting_after, paging.limit)
    elif paging.ending_before is not None:
        items, has_more = _before(iter(newest_first), paging.ending_before, paging.limit)
    else:
        head = list(islice(newest_first, paging.limit + 1))
        items, has_more = head[: paging.limit], len(head) > paging.limit
    return {"object": "list", "data": [render(item) for item in items], "has_more": has_more, "url": url}


def _after(items: Iterator[T], cursor: str, limit: int) -> tuple[list[T], bool]:
    for item in items:
        if item.id == cursor:
            break
    page = list(islice(items, limit + 1))
    return page[:limit], len(page) > limit


def _before(items: Iterator[T], cursor: str, limit: int) -> tuple[list[T], bool]:
    # The `limit` items just newer than the cursor; `has_more` says whether there are newer still.
    window: deque[T] = deque(maxlen=limit + 1)
    for item in items:
        if item.id == cursor:
            break
        window.append(item)
    page = list(window)
    return page[-limit:], len(page) > limit
