from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

# Stripe retries a failed delivery with exponential back-off for up to three days in live mode (it
# publishes no exact intervals): here 1 min, 5 min, 30 min, then doubling from 1 h to 16 h, then a
# day twice; the last of the ten retries comes about three days after the first attempt. Tests
# shorten it.
STRIPE_RETRY_SCHEDULE: list[float] = [60, 300, 1800, 3600, 7200, 14400, 28800, 57600, 86400, 86400]
# The types the shop handles (PROVIDERS.md), i.e. what its endpoint would subscribe to in Stripe's
# dashboard. Every event is still recorded and listed by GET /v1/events.
SHOP_WEBHOOK_EVENTS: list[str] = [
    "checkout.session.completed",
    "checkout.session.async_payment_succeeded",
    "checkout.session.async_payment_failed",
    "checkout.session.expired",
    "charge.refunded",
    "refund.updated",
]
# The sandbox's own signing secret; the payments service must verify sandbox deliveries with the
# same value (it reads this setting too), never with a real endpoint's STRIPE_WEBHOOK_SECRET.
SANDBOX_WEBHOOK_SECRET = "whsec_shop_sandbox_dev_secret"


class StripeSandboxSettings(BaseSettings):
    """Where the fake Stripe delivers its webhooks, how it signs and retries them, where it keeps state."""

    model_config = SettingsConfigDict(
        env_prefix="SHOP_SANDBOX_STRIPE_", env_file=".env", extra="ignore", populate_by_name=True
    )

    webhook_url: str = "http://127.0.0.1:8000/api/payments/webhooks/stripe"
    webhook_secret: str = SANDBOX_WEBHOOK_SECRET
    # Seconds to wait before each retry of a delivery that got no 2xx.
    webhook_retry_delays: list[float] = Field(default_factory=lambda: list(STRIPE_RETRY_SCHEDULE))
    webhook_timeout: float = Field(default=10.0, gt=0)
    # Deliveries in flight at once; the rest wait their turn.
    webhook_max_concurrent: int = Field(default=8, ge=1, le=256)
    # Event types sent to the endpoint (`*` for all).
    webhook_events: list[str] = Field(default_factory=lambda: list(SHOP_WEBHOOK_EVENTS))
    # How long the `reverse` fault mode holds deliveries before sending them newest first.
    webhook_reverse_hold: float = Field(default=1.0, ge=0)
    # After a restart, pending deliveries resume no sooner than this (the endpoint may be starting too).
    webhook_resume_delay: float = Field(default=5.0, ge=0)
    # How often open sessions past their `expires_at` are expired (and `checkout.session.expired` sent).
    expiry_sweep_interval: float = Field(default=5.0, gt=0)
    api_version: str = "2026-10-28.endive"
    # Unset: state in memory only. Set: kept in <dir>/stripe.sqlite3 and read back at start-up.
    state_dir: Path | None = Field(default=None, validation_alias="SHOP_SANDBOX_STATE_DIR")
