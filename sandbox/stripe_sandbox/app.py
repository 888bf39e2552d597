"""The Stripe sandbox as an ASGI app: the API, the hosted Checkout page and the test controls."""

from __future__ import annotations

import asyncio
import logging

from fastapi import FastAPI

from sandbox.background import BackgroundLoop
from sandbox.persistence import open_journal
from sandbox.stripe_sandbox import api, checkout, controls, hosted
from sandbox.stripe_sandbox.account import StripeAccount
from sandbox.stripe_sandbox.context import StripeContext
from sandbox.stripe_sandbox.errors import StripeError
from sandbox.stripe_sandbox.idempotency import IdempotencyKeys
from sandbox.stripe_sandbox.settings import StripeSandboxSettings
from sandbox.stripe_sandbox.webhooks import WebhookDispatcher
from sandbox.stripe_sandbox.wire import RequestIdMiddleware

log = logging.getLogger(__name__)


def create_app(settings: StripeSandboxSettings | None = None) -> FastAPI:
    settings = settings or StripeSandboxSettings()
    journal = open_journal(settings.state_dir, "stripe")
    account = StripeAccount(settings.api_version, journal)
    keys = IdempotencyKeys(journal=journal)
    background = BackgroundLoop("stripe-sandbox-webhooks")
    dispatcher = WebhookDispatcher(settings, account, background)
    account.deliveries = dispatcher
    account.publish = dispatcher.publish
    context = StripeContext(settings, account, keys, background, dispatcher)
    background.on_start(lambda: _sweep_expired_sessions(context))
    if journal is not None:
        account.load()
        keys.load()
        if dispatcher.resume() or account.open_by_expiry:
            background.loop()

    app = FastAPI(title="Stripe sandbox", description="A local fake of the Stripe API for the shop.")
    app.state.sandbox = context
    app.state.settings = settings
    app.state.account = account
    app.state.dispatcher = dispatcher
    app.add_exception_handler(StripeError, api.stripe_error)
    app.add_middleware(RequestIdMiddleware)
    app.include_router(api.router)
    app.include_router(hosted.router)
    app.include_router(controls.router)
    return app


async def _sweep_expired_sessions(context: StripeContext) -> None:
    while True:
        await asyncio.sleep(context.settings.expiry_sweep_interval)
        try:
            checkout.expire_due_sessions(context.account)
        except Exception:  # the sweeper must outlive any one bad pass
            log.exception("expiring sessions failed")
