"""Settings of the payments service (environment, prefix SHOP_; provider keys keep their usual names),
and the one rule that decides where payments talks to and which provider sandboxes may run."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from shopkit.settings import KitSettings

# Safe only against the local sandboxes (and bKash's public sandbox): production refuses them.
SANDBOX_STRIPE_SECRET_KEY = "sk_test_shop_sandbox"
SANDBOX_STRIPE_WEBHOOK_SECRET = "whsec_shop_sandbox_dev_secret"
SANDBOX_BKASH_APP_KEY = "4f6o0cjiki2rfm34kfdadl1eqq"
SANDBOX_BKASH_APP_SECRET = "2is7hdktrekvrbljjh44ll3d9l1dtjo4pasmjvs5vl5qr3fug4b"
SANDBOX_BKASH_USERNAME = "sandboxTokenizedUser02"
SANDBOX_BKASH_PASSWORD = "sandboxTokenizedUser02@12345"
BKASH_SANDBOX_HOST = "tokenized.sandbox.bka.sh"
BKASH_PRODUCTION_BASE = "https://tokenized.pay.bka.sh/v1.2.0-beta"
STRIPE_API_HOST = "api.stripe.com"

SANDBOX_DEFAULTS = {
    "STRIPE_SECRET_KEY": SANDBOX_STRIPE_SECRET_KEY,
    "STRIPE_WEBHOOK_SECRET": SANDBOX_STRIPE_WEBHOOK_SECRET,
    "BKASH_APP_KEY": SANDBOX_BKASH_APP_KEY,
    "BKASH_APP_SECRET": SANDBOX_BKASH_APP_SECRET,
    "BKASH_USERNAME": SANDBOX_BKASH_USERNAME,
    "BKASH_PASSWORD": SANDBOX_BKASH_PASSWORD,
}
BKASH_CREDENTIALS = ("BKASH_APP_KEY", "BKASH_APP_SECRET", "BKASH_USERNAME", "BKASH_PASSWORD")


@dataclass(frozen=True)
class SandboxPlan:
    """Which provider sandboxes may run beside this configuration (all-in-one mounts them, the
    supervisor starts them as processes): a sandbox never stands beside real keys, nor in production."""

    stripe: bool
    bkash: bool


def decide_sandboxes(environment: str, provided: Mapping[str, str | None]) -> SandboxPlan:
    """The one rule. `provided`: the provider keys as configured (env var name -> value or None);
    a key left at its sandbox default counts as unset."""
    if environment == "production":
        return SandboxPlan(stripe=False, bkash=False)

    def configured(name: str) -> bool:
        value = provided.get(name)
        return bool(value) and value != SANDBOX_DEFAULTS[name]

    return SandboxPlan(
        stripe=not configured("STRIPE_SECRET_KEY"),
        bkash=not any(configured(name) for name in BKASH_CREDENTIALS),
    )


class _ProviderKeys(BaseSettings):
    """Only what the sandbox rule reads, from the same sources as the services (environment, .env)."""

    model_config = SettingsConfigDict(env_prefix="SHOP_", env_file=".env", extra="ignore", populate_by_name=True)

    environment: str = "development"
    stripe_secret_key: str | None = Field(default=None, validation_alias="STRIPE_SECRET_KEY")
    bkash_app_key: str | None = Field(default=None, validation_alias="BKASH_APP_KEY")
    bkash_app_secret: str | None = Field(default=None, validation_alias="BKASH_APP_SECRET")
    bkash_username: str | None = Field(default=None, validation_alias="BKASH_USERNAME")
    bkash_password: str | None = Field(default=None, validation_alias="BKASH_PASSWORD")


def sandbox_plan(overrides: Mapping[str, str] | None = None) -> SandboxPlan:
    """The plan for this process's configuration, with `overrides` (env var name -> value, as a
    supervisor passes to its children) taking precedence. Reads no database or broker settings, so
    it never refuses to answer."""
    given = dict(overrides or {})
    values: dict[str, str] = {name: given[name] for name in ("STRIPE_SECRET_KEY", *BKASH_CREDENTIALS) if name in given}
    if "SHOP_ENVIRONMENT" in given:
        values["environment"] = given["SHOP_ENVIRONMENT"]
    keys = _ProviderKeys(**values)  # type: ignore[arg-type]
    return decide_sandboxes(
        keys.environment,
        {
            "STRIPE_SECRET_KEY": keys.stripe_secret_key,
            "BKASH_APP_KEY": keys.bkash_app_key,
            "BKASH_APP_SECRET": keys.bkash_app_secret,
            "BKASH_USERNAME": keys.bkash_username,
            "BKASH_PASSWORD": keys.bkash_password,
        },
    )


def _looks_like_a_sandbox(url: str, local_sandboxes: tuple[str, ...]) -> bool:
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    if any(url.rstrip("/").startswith(local.rstrip("/")) for local in local_sandboxes):
        return True
    return "sandbox" in host or "/sandbox" in parts.path or host in ("localhost", "127.0.0.1", "::1")


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
    # What the Stripe sandbox signs its deliveries with (the sandbox reads the same variable). Used
    # only while payments talks to the sandbox: a real endpoint's secret never verifies sandbox events.
    sandbox_stripe_webhook_secret: str = SANDBOX_STRIPE_WEBHOOK_SECRET

    stripe_timeout: float = 10.0
    bkash_timeout: float = 10.0
    # A token is renewed this many seconds before bKash would expire it, so no call races the expiry.
    bkash_token_margin: float = 300.0
    # Stripe Checkout Sessions live between 30 min and 24 h; a payable order times out after 15 min.
    stripe_session_ttl: int = 3600
    # The backstop: how often stored-but-unprocessed webhooks, due refunds and provider cancellations
    # are looked for even if nothing woke the workers (a crash between a commit and its wake-up).
    sweep_interval: float = 2.0
    # Seconds the oldest acknowledged webhook may wait to be applied before new payments get 503 +
    # Retry-After (0: never refuse).
    shed_webhook_backlog: float = Field(default=5.0, ge=0)
    # A bKash payment left `executing` longer than this (a crash mid-Execute) is settled by Query.
    bkash_stuck_after: float = 30.0
    # Reconciliation: every interval, payments still open (or refund_pending) for longer than the grace
    # are looked up at their provider, and Stripe's events since the last seen are read for refunds
    # made outside the shop (a lost webhook, the dashboard).
    reconcile_interval: float = Field(default=300.0, gt=0)
    reconcile_grace: float = Field(default=60.0, ge=0)
    # How far back the very first reading of Stripe's events goes (Stripe keeps 30 days of them).
    reconcile_events_lookback: float = Field(default=3 * 86400.0, gt=0)
    # Provider log rows (and processed webhook events) older than this are deleted.
    provider_log_retention_days: float = Field(default=90.0, gt=0)

    @model_validator(mode="after")
    def _production_refuses_sandbox_configuration(self) -> PaymentsSettings:
        if self.environment == "production":
            problems = self.provider_problems()
            if problems:
                raise ValueError("refusing to start in production: " + "; ".join(problems))
        return self

    def provider_problems(self) -> list[str]:
        """What production refuses: default or missing secrets, test keys, sandboxes."""
        weak = [name for name, value in self.provider_secrets().items() if not value or value == SANDBOX_DEFAULTS[name]]
        problems = ["default or missing provider secrets: " + ", ".join(weak)] if weak else []
        if self.stripe_secret_key.startswith("sk_test_"):
            problems.append("STRIPE_SECRET_KEY is a test key (sk_test_)")
        if self.stripe_api_base and urlsplit(self.stripe_api_base).hostname != STRIPE_API_HOST:
            problems.append("STRIPE_API_BASE is not Stripe's API (a sandbox?)")
        locals_ = (self.sandbox_stripe_url, self.sandbox_bkash_url)
        if self.bkash_base_url and (
            _looks_like_a_sandbox(self.bkash_base_url, locals_) or not self.bkash_base_url.startswith("https://")
        ):
            problems.append("BKASH_BASE_URL is a sandbox (or not https)")
        return problems

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
    def sandboxes(self) -> SandboxPlan:
        return decide_sandboxes(self.environment, self.provider_secrets())

    @property
    def stripe_base(self) -> str | None:
        """Where the Stripe library goes: the local sandbox unless real keys are configured."""
        if self.stripe_api_base:
            return self.stripe_api_base.rstrip("/")
        if self.sandboxes.stripe:
            return self.sandbox_stripe_url.rstrip("/")
        return None

    @property
    def stripe_webhook_signing_secret(self) -> str | None:
        """The secret webhooks must be signed with; None: refuse every delivery. With real keys only
        the endpoint's own STRIPE_WEBHOOK_SECRET counts, and never its public development default."""
        if self.sandboxes.stripe:
            return self.sandbox_stripe_webhook_secret
        if self.stripe_webhook_secret in ("", SANDBOX_STRIPE_WEBHOOK_SECRET):
            return None
        return self.stripe_webhook_secret

    @property
    def bkash_base(self) -> str:
        if self.bkash_base_url:
            return self.bkash_base_url.rstrip("/")
        if self.sandboxes.bkash:
            return self.sandbox_bkash_url.rstrip("/")
        # Real merchant credentials belong to bKash's production host; its sandbox host only when
        # BKASH_BASE_URL names it.
        return BKASH_PRODUCTION_BASE
