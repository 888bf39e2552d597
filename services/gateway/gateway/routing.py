"""What answers a (normalised) path through the gateway, and which rate limit applies to it."""

from __future__ import annotations

# Path prefix -> service. Under these prefixes a service keeps only its public routes; its /internal,
# /metrics and /readyz routes lie outside every prefix and so are never reached from outside.
ROUTES: dict[str, str] = {
    "/api/auth": "auth",
    "/api/products": "catalog",
    "/api/categories": "catalog",
    "/api/orders": "orders",
    "/api/payments": "payments",
}
_ROUTE_PREFIXES = tuple((prefix, prefix + "/", service) for prefix, service in ROUTES.items())
# The gateway's own public pages; its metrics are on its internal port only (see internal.py).
SITE_PATHS = frozenset({"/docs", "/openapi.json", "/healthz", "/readyz"})
# Provider webhooks and the customer's browser coming back from bKash: keyed per address with a
# more generous limit of their own (a provider sends bursts from a few addresses).
WEBHOOK_PREFIX = "/api/payments/webhooks/"
BKASH_CALLBACK = "/api/payments/bkash/callback"


def route_for(path: str) -> str | None:
    for prefix, below, service in _ROUTE_PREFIXES:
        if path == prefix or path.startswith(below):
            return service
    return None


def is_provider_callback(path: str) -> bool:
    return path.startswith(WEBHOOK_PREFIX) or path == BKASH_CALLBACK


def is_mounted(path: str, mounts: tuple[str, ...]) -> bool:
    return any(path == mount or path.startswith(mount + "/") for mount in mounts)
