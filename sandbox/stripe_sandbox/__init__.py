"""A local fake of the Stripe API: Checkout Sessions, refunds, payment intents, signed webhooks."""

from sandbox.stripe_sandbox.app import create_app
from sandbox.stripe_sandbox.settings import StripeSandboxSettings

__all__ = ["StripeSandboxSettings", "create_app"]
