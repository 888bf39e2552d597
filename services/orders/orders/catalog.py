"""The read-through of products the view has not heard of yet: the catalog's internal lookup.

Placement calls it only for unknown products (a product created a moment ago, before its
ProductChanged arrived). Concurrent placements asking for the same product share one request, and
after the catalog failed to answer, placements of unknown products are refused at once for a few
seconds (503 with Retry-After) instead of each waiting on a catalog that is down."""

from __future__ import annotations

import asyncio
import logging
import math
import time
import uuid
from collections.abc import Sequence

import anyio.from_thread
from pydantic import ValidationError

from contracts import ProductChanged
from contracts.internal import ProductLookupRequest, ProductLookupResponse
from shopkit.http import ServiceClient, UpstreamUnavailable
from shopkit.problems import ServiceUnavailable

log = logging.getLogger("orders.catalog")

LOOKUP_PATH = "/internal/products/lookup"

Answer = dict[uuid.UUID, ProductChanged]


class CatalogLookup:
    def __init__(self, client: ServiceClient, *, retry_after: float) -> None:
        self.client = client
        self.retry_after = retry_after
        self._asking: dict[uuid.UUID, asyncio.Task[Answer]] = {}
        self._down_until = 0.0

    def lookup_from_thread(self, ids: Sequence[uuid.UUID]) -> list[ProductChanged]:
        """For a use case running in a worker thread of the event loop (a sync route)."""
        return anyio.from_thread.run(self.lookup, ids)

    async def lookup(self, ids: Sequence[uuid.UUID]) -> list[ProductChanged]:
        """The catalog's current facts of these products (archived ones included); unknown ids are
        absent. ServiceUnavailable when the catalog cannot answer."""
        wait = self._down_until - time.monotonic()
        if wait > 0:
            raise self._unavailable("the catalog is unavailable; try again shortly", wait)
        tasks = {self._asking[i] for i in ids if i in self._asking}
        ask = [i for i in ids if i not in self._asking]
        if ask:
            task = asyncio.get_running_loop().create_task(self._ask(ask))
            self._asking.update(dict.fromkeys(ask, task))
            task.add_done_callback(lambda done: self._forget(ask, done))
            tasks.add(task)
        found: Answer = {}
        for task in tasks:
            # shield: a placement that gives up must not cancel the request others wait on too
            found.update(await asyncio.shield(task))
        return [found[i] for i in ids if i in found]

    def _forget(self, ids: list[uuid.UUID], done: asyncio.Task[Answer]) -> None:
        for i in ids:
            if self._asking.get(i) is done:
                del self._asking[i]
        if not done.cancelled():
            done.exception()  # retrieved here, so a failure nobody waited for is not logged as lost

    async def _ask(self, ids: list[uuid.UUID]) -> Answer:
        body = ProductLookupRequest(ids=ids).model_dump(mode="json")
        try:
            response = await self.client.request("POST", LOOKUP_PATH, json_body=body)
        except UpstreamUnavailable as exc:
            log.warning("catalog unreachable", extra={"error": str(exc)})
            raise self._tripped("the catalog is unavailable; try again shortly") from exc
        if response.status != 200:
            log.warning("catalog lookup failed", extra={"status": response.status})
            raise self._tripped("the catalog could not answer; try again shortly")
        try:
            answer = ProductLookupResponse.model_validate(response.body)
        except ValidationError as exc:
            log.error("catalog lookup answered an unexpected body", extra={"error": str(exc)})
            raise self._tripped("the catalog answered unexpectedly; try again shortly") from exc
        return {product.product_id: product for product in answer.products}

    def _tripped(self, detail: str) -> ServiceUnavailable:
        self._down_until = time.monotonic() + self.retry_after
        return self._unavailable(detail, self.retry_after)

    @staticmethod
    def _unavailable(detail: str, wait: float) -> ServiceUnavailable:
        return ServiceUnavailable(detail, headers={"Retry-After": str(max(1, math.ceil(wait)))})
