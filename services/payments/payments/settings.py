"""Settings of the payments service (environment, prefix SHOP_; provider keys keep their usual names)."""

from __future__ import annotations

from pydantic import Field, model_validator
from pydantic_settings import SettingsConfigDict

from shopkit.settings import KitSettings

# Safe only against the local sandboxes (and bKash's public sandbox): production refuses them.
SANDBOX_STRIPE_SECRET_KEY = "sk_test_shop_sandbox"
SANDBOX_STRIPE_WEBHOOK_SECRET = "whsec_shop_sandbox_dev_secret"
SANDBOX_BKASH_APP_KEY = "4f6o0cjiki2rfm34kfdadl1eqq"
SANDBOX_BKASH_APP_SECRET = "2is7hdktrekvrbljjh44ll3d9l1dtjo4pasmjvs5vl5qr3fug4b"
SANDBOX_BKASH_USERNAME = "sandboxTokenizedUser02"
SANDBOX_BKASH_PASSWORD = "sandboxTokenizedUser02@12345"

SANDBOX_DEFAULTS = {
    "STRIPE_SECRET_KEY": SANDBOX_STRIPE_SECRET_KEY,
    "STRIPE_WEBHOOK_SECRET": SANDBOX_STRIPE_WEBHOOK_SECRET,
    "BKASH_APP_KEY": SANDBOX_BKASH_APP_KEY,
    "BKASH_APP_SECRET": SANDBOX_BKASH_APP_SECRET,
    "BKASH_USERNAME": SANDBOX_BKASH_USERNAME,
    "BKASH_PASSWORD": SANDBOX_BKASH_PASSWORD,
}


class PaymentsSettings(KitSettings):
    model_config = SettingsConfigDict(env_prefix="SHOP_", env_file=".env", extra="ignore", populate_by_name=True)

    stripe_secret_key: str = Field(default=SANDBOX_STRIPE_SECRET_KEY, validation_alias="STRIPE_SECRET_KEY")
    stripe_webhook_secret: str = Field(default=SANDBOX_STRIPE_WEBHOOK_SECRET, validation_alias="STRIPE_WEBHOOK_SECRET")
    stripe_api_base: str | None = Field(default=None, validation_alias="STRIPE_API_BASE")
    bkash_app_key: str = Field(default=SANDBOX_BKASH_APP_KEY, validation_alias="BKASH_APP_KEY")
    bkash_app_secret: str = Field(default=SANDBOX_BKASH_APP_SECRET, validation_alias="BKASH_APP_SECRET")
    bkash_username: str = Field(default=SANDBOX_BKASH_USERNAME, validation_alias="BKASH_USERNAME")
    bkash_password: str = Field(default=SANDBOX_BKASH_PASSWORD, validation_alias="BKASH_PASSWORD")
    bkash_base_url: str | None = Field(default=None, validation_alias="BKASH_BASE_URL")

    sandbox_stripe_url: str = "http://127.0.0.1:8010"
    sandbox_bkash_url: str = "http://127.0.0.1:8011"

    stripe_timeout: float = 10.0
    bkash_timeout: float = 10.0
    # A token is renewed this many seconds before bKash would expire it, so no call races the expiry.
    bkash_token_margin: float = 300.0
    # Stripe Checkout Sessions live between 30 min and 24 h; a payable order times out after 15 min.
    stripe_session_ttl: int = 3600
    # How often stored-but-unprocessed webhooks, pending refunds and stuck executions are retried.
    sweep_interval: float = 2.0
    # A bKash payment left `executing` longer than this (a crash mid-Execute) is settled by Query.
    bkash_stuck_after: float = 30.0

    @model_validator(mode="after")
    def _production_needs_provider_secrets(self) -> PaymentsSettings:
        if self.environment == "production":
            weak = [
                name for name, value in self.provider_secrets().items() if not value or value == SANDBOX_DEFAULTS[name]
            ]
            if weak:
                raise ValueError(
                    "refusing to start in production with default or missing provider secrets: " + ", ".join(weak)
                )
        return self

    def provider_secrets(self) -> dict[str, str]:
        return {
            "STRIPE_SECRET_KEY": self.stripe_secret_key,
            "STRIPE_WEBHOOK_SECRET": self.stripe_webhook_secret,
            "BKASH_APP_KEY": self.bkash_app_key,
            "BKASH_APP_SECRET": self.bkash_app_secret,
            "BKASH_USERNAME": self.bkash_username,
            "BKASH_PASSWORD": self.bkash_password,
        }

    @property
    def stripe_base(self) -> str | None:
        """Where the Stripe library goes: the local sandbox unless real keys are configured."""
        if self.stripe_api_base:
            return self.stripe_api_base.rstrip("/")
        if self.stripe_secret_key == SANDBOX_STRIPE_SECRET_KEY:
            return self.sandbox_stripe_url.rstrip("/")
        return None

    @property
    def bkash_base(self) -> str:
        if self.bkash_base_url:
            return self.bkash_base_url.rstrip("/")
        if self.bkash_app_key == SANDBOX_BKASH_APP_KEY:
            return self.sandbox_bkash_url.rstrip("/")
        return "https://tokenized.sandbox.bka.sh/v1.2.0-beta"
