"""The Stripe sandbox as an ASGI app: the API, the hosted Checkout page and the test controls."""

from __future__ import annotations

import asyncio
import logging

from starlette.applications import Starlette
from starlette.middleware import Middleware

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
from sandbox.web import InvalidControlBody, invalid_control_body

log = logging.getLogger(__name__)


def create_app(settings: StripeSandboxSettings | None = None) -> Starlette:
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

    app = Starlette(
        routes=[*api.routes, *hosted.routes, *controls.routes],
        middleware=[Middleware(RequestIdMiddleware)],
        exception_handlers={StripeError: api.stripe_error, InvalidControlBody: invalid_control_body},
    )
    app.state.sandbox = context
    app.state.settings = settings
    app.state.account = account
    app.state.dispatcher = dispatcher
    return app


async def _sweep_expired_sessions(context: StripeContext) -> None:
    while True:
        await asyncio.sleep(context.settings.expiry_sweep_interval)
        try:
            checkout.expire_due_sessions(context.account)
        except Exception:  # the sweeper must outlive any one bad pass
            log.exception("expiring sessions failed")
