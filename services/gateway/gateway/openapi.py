"""One OpenAPI document for the whole shop, merged from every service's own: each operation as its
service documents it, plus what the gateway itself answers before or instead of the service."""

from __future__ import annotations

import logging
import time
from typing import Any

from gateway.upstream import Upstream
from shopkit.openapi import add_problems, problem_schemas

log = logging.getLogger("gateway.openapi")

# 400: a refused path or query spelling (gateway.paths); 401: a malformed or invalid bearer token,
# whatever the route; 429: the rate limits; 502/504: the service unreachable or too slow.
GATEWAY_STATUSES = (400, 401, 429, 502, 504)
_BODY_METHODS = frozenset({"post", "put", "patch"})
TAGS = {
    "auth": "Accounts, logins and tokens.",
    "catalog": "Products, categories and stock.",
    "orders": "Orders: placing, cancelling, shipping.",
    "payments": "Payments through Stripe and bKash, refunds, provider callbacks.",
}


class MergedOpenAPI:
    def __init__(self, upstreams: list[Upstream], *, cache_seconds: float) -> None:
        self.upstreams = upstreams
        self.cache_seconds = cache_seconds
        self._cached: dict[str, Any] | None = None
        self._at = 0.0

    async def document(self) -> dict[str, Any]:
        if self._cached is not None and time.monotonic() - self._at < self.cache_seconds:
            return self._cached
        merged: dict[str, Any] = {
            "openapi": "3.1.0",
            "info": {
                "title": "Shop API",
                "version": "1.0.0",
                "description": "Every public route, through the gateway.",
            },
            "tags": [],
            "paths": {},
            "components": {"schemas": problem_schemas(), "securitySchemes": {}},
        }
        complete = True
        for upstream in self.upstreams:
            try:
                spec: Any = await upstream.get_json("/openapi.json")
            except Exception:
                log.warning("no OpenAPI document from %s", upstream.name, exc_info=True)
                complete = False
                continue
            for path, item in spec.get("paths", {}).items():
                if path.startswith("/api/"):
                    merged["paths"][path] = item
                    for method, operation in item.items():
                        statuses = (*GATEWAY_STATUSES, 413) if method in _BODY_METHODS else GATEWAY_STATUSES
                        add_problems(operation, statuses)
            merged["tags"].append({"name": upstream.name, "description": TAGS.get(upstream.name, "")})
            for section, entries in spec.get("components", {}).items():
                merged["components"].setdefault(section, {}).update(entries)
        if complete:
            self._cached, self._at = merged, time.monotonic()
        return merged
