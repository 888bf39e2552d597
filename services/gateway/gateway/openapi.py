"""One OpenAPI document for the whole shop, merged from every service's own."""

from __future__ import annotations

import logging
import time
from typing import Any

from gateway.upstream import Upstream

log = logging.getLogger("gateway.openapi")


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
            "paths": {},
            "components": {"schemas": {}, "securitySchemes": {}},
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
            for section, entries in spec.get("components", {}).items():
                merged["components"].setdefault(section, {}).update(entries)
        if complete:
            self._cached, self._at = merged, time.monotonic()
        return merged
