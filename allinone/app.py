"""Builds the whole shop as one ASGI app: each service keeps its own SQLite file under var/ and its own
outbox, relay and inbox; the bus is in-process. The gateway calls the services' apps directly."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

from fastapi import FastAPI
from starlette.types import ASGIApp, Receive, Scope, Send

from shopkit import tracing
from shopkit.bus.inprocess import InProcessTransport
from shopkit.settings import KitSettings

DEV_ADMIN_EMAIL = "admin@example.com"
DEV_ADMIN_PASSWORD = "Admin-Pass-123"


def configure_environment(port: int) -> None:
    """Point every part at this one process unless the environment says otherwise."""
    base = os.environ.setdefault("SHOP_PUBLIC_URL", f"http://127.0.0.1:{port}")
    os.environ.setdefault("SHOP_SANDBOX_STRIPE_URL", f"{base}/sandbox/stripe")
    os.environ.setdefault("SHOP_SANDBOX_BKASH_URL", f"{base}/sandbox/bkash")
    os.environ.setdefault("SHOP_SANDBOX_STRIPE_WEBHOOK_URL", f"{base}/api/payments/webhooks/stripe")
    # The sandboxes keep their state beside the services' databases, so a restarted shop still finds
    # every session and payment at its "provider", as it would at the real ones.
    var_dir = os.environ.get("SHOP_VAR_DIR", "var")
    os.environ.setdefault("SHOP_SANDBOX_STATE_DIR", os.path.join(var_dir, "sandbox"))
    if KitSettings().environment != "production":
        os.environ.setdefault("SHOP_ADMIN_EMAIL", DEV_ADMIN_EMAIL)
        os.environ.setdefault("SHOP_ADMIN_PASSWORD", DEV_ADMIN_PASSWORD)


class AllInOne:
    def __init__(self) -> None:
        from auth.app import create_app as create_auth
        from catalog.app import create_app as create_catalog
        from gateway.app import asgi_upstreams
        from gateway.app import create_app as create_gateway
        from orders.app import create_app as create_orders
        from payments.app import create_app as create_payments
        from payments.settings import sandbox_plan
        from sandbox.bkash_sandbox.app import create_app as create_bkash_sandbox
        from sandbox.stripe_sandbox.app import create_app as create_stripe_sandbox

        # One process, one OpenTelemetry resource: named before the first service would name it after
        # itself; each span still says which service made it (shop.service).
        tracing.configure("allinone")
        settings = KitSettings()
        self.transport = InProcessTransport(retry_delays=settings.retry_delays)
        catalog = create_catalog(transport=self.transport)
        self.services: dict[str, FastAPI] = {
            "auth": create_auth(transport=self.transport),
            "catalog": catalog,
            "orders": create_orders(transport=self.transport, catalog_app=catalog),
            "payments": create_payments(transport=self.transport),
        }
        readiness = {}
        for name, app in self.services.items():
            runtime = app.state.runtime
            readiness[f"{name}.database"] = runtime.check_database
            readiness[f"{name}.broker"] = runtime.check_broker
        # A sandbox never stands beside real provider keys, nor in production: payments decides.
        plan = sandbox_plan()
        sandboxes: dict[str, ASGIApp] = {}
        if plan.stripe:
            sandboxes["/sandbox/stripe"] = create_stripe_sandbox()
        if plan.bkash:
            sandboxes["/sandbox/bkash"] = create_bkash_sandbox()
        self.gateway = create_gateway(
            upstreams=asgi_upstreams(self.services), extra_mounts=sandboxes, readiness=readiness
        )

    @asynccontextmanager
    async def lifespan(self) -> AsyncIterator[None]:
        self.transport.hold()
        async with AsyncExitStack() as stack:
            for app in self.services.values():
                await stack.enter_async_context(app.router.lifespan_context(app))
            self.transport.release()
            yield

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        await self.gateway(scope, receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        message = await receive()
        assert message["type"] == "lifespan.startup"
        context = self.lifespan()
        try:
            await context.__aenter__()
        except Exception as exc:
            await send({"type": "lifespan.startup.failed", "message": repr(exc)})
            raise
        await send({"type": "lifespan.startup.complete"})
        message = await receive()
        await context.__aexit__(None, None, None)
        await send({"type": "lifespan.shutdown.complete"})


def create_app(port: int = 8000) -> ASGIApp:
    configure_environment(port)
    return AllInOne()
