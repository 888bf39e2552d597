from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class StripeSandboxSettings(BaseSettings):
    """Where the fake Stripe delivers its webhooks and how it signs and retries them."""

    model_config = SettingsConfigDict(
        env_prefix="SHOP_SANDBOX_STRIPE_", env_file=".env", extra="ignore", populate_by_name=True
    )

    webhook_url: str = "http://127.0.0.1:8000/api/payments/webhooks/stripe"
    # The same variable the payments service verifies with, so both ends agree without extra setup.
    webhook_secret: str = Field(default="whsec_shop_sandbox_dev_secret", validation_alias="STRIPE_WEBHOOK_SECRET")
    # Seconds to wait before each retry of a delivery that got no 2xx (real Stripe retries for days).
    webhook_retry_delays: list[float] = [1, 2, 5, 10, 30]
    webhook_timeout: float = 10.0
    # How often open sessions past their `expires_at` are expired (and `checkout.session.expired` sent).
    expiry_sweep_interval: float = 5.0
    api_version: str = "2026-10-28.endive"
