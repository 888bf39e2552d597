"""What the Stripe sandbox's routes share: the account, the webhook dispatcher, keys and delays."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from starlette.requests import Request

from sandbox.background import BackgroundLoop
from sandbox.stripe_sandbox.account import StripeAccount
from sandbox.stripe_sandbox.idempotency import IdempotencyKeys
from sandbox.stripe_sandbox.settings import StripeSandboxSettings
from sandbox.stripe_sandbox.webhooks import WebhookDispatcher


@dataclass
class ApiDelay:
    """A pause inside every POST /v1 call, after its idempotency key is claimed.

    It lets tests hold a request "in progress" (to see the 409 for a concurrent same-key request)
    and lets client code exercise its timeouts.
    """

    seconds: float = 0.0

    async def wait(self) -> None:
        if self.seconds > 0:
            await asyncio.sleep(self.seconds)


@dataclass
class StripeContext:
    settings: StripeSandboxSettings
    account: StripeAccount
    keys: IdempotencyKeys
    background: BackgroundLoop
    dispatcher: WebhookDispatcher
    api_delay: ApiDelay = field(default_factory=ApiDelay)


def context_of(request: Request) -> StripeContext:
    # `request.app` is the sandbox's own app, also when it is mounted inside another one.
    context: StripeContext = request.app.state.sandbox
    return context
