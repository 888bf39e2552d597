"""Settings from the environment and an optional .env; `SHOP_` prefix for the shop's own keys."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal
from urllib.parse import quote, urlsplit, urlunsplit

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEV_ROLE_PASSWORD_SUFFIX = "-dev-password"
# Development and tests only: production refuses to start with it (see production_problems).
DEV_INTERNAL_TOKEN = "dev-internal-token-not-for-production"


class KitSettings(BaseSettings):
    """What every service reads. A service's settings inherit this and add their own keys."""

    model_config = SettingsConfigDict(env_prefix="SHOP_", env_file=".env", extra="ignore")
    # The gateway holds no data and sends no events: production does not ask it for either URL.
    uses_database_and_bus: ClassVar[bool] = True

    environment: Literal["development", "test", "production"] = "development"
    var_dir: Path = Path("var")
    # One PostgreSQL database for all services (each in its own schema, under its own role), or unset
    # for a SQLite file per service under var_dir.
    database_url: str | None = None
    # Each service's role has its own password (SHOP_DB_PASSWORD_AUTH, ...), so a deployment can hand
    # each service only its own; SHOP_DB_ROLE_PASSWORD is the fallback for every role without one.
    db_role_password: str | None = Field(default=None, description="password of the per-service roles")
    db_password_auth: str | None = None
    db_password_catalog: str | None = None
    db_password_orders: str | None = None
    db_password_payments: str | None = None
    # A process holds at most 2 x db_pool_size connections for its transactions and db_pool_size // 2
    # for its reads: the four services' defaults (4 x 12) fit in PostgreSQL's default 100 with room
    # for a second replica of one of them. 10 made no measurable difference under the bench's load.
    db_pool_size: int = 5
    # Requests a service takes at once (waiting for a thread included); beyond it 503 + Retry-After at
    # once rather than a wait longer than the gateway's (0: no limit).
    max_in_flight: int = 64
    # Long polls (Prefer: wait) waiting at once; they hold no thread nor connection while they wait, so
    # they are not in flight meanwhile. Beyond it a wait is not granted (answered at once, Retry-After).
    max_waiting: int = 1000
    amqp_url: str | None = None
    amqp_prefetch: int = 100
    # Prefix of the exchange and queue names: lets test runs share one broker without seeing each other.
    bus_namespace: str = ""
    # Consumers: batch workers per queue, and the most messages one batch (one transaction) applies.
    consumer_workers: int = 2
    consumer_batch_size: int = 100
    retry_delays: list[float] = [0.5, 2.0, 8.0]
    relay_batch_size: int = 100
    relay_poll_interval: float = 0.5
    # Seconds a woken relay waits for more commits before it claims its batch.
    relay_linger: float = 0.005
    outbox_max_attempts: int = 10
    # Housekeeping: sent outbox rows and inbox records are kept this long, then deleted.
    outbox_retention_hours: float = 24.0
    inbox_retention_days: float = 14.0

    jwt_issuer: str = "shop-auth"
    jwt_audience: str = "shop"
    jwt_private_key: str | None = None  # PEM; development generates a pair under var_dir
    jwt_public_key: str | None = None  # PEM
    jwt_algorithm: Literal["RS256", "EdDSA"] = "EdDSA"

    # Where clients reach the shop (the gateway): callback and redirect URLs are built from it.
    public_url: str = "http://127.0.0.1:8000"
    auth_url: str = "http://127.0.0.1:8001"
    catalog_url: str = "http://127.0.0.1:8002"
    orders_url: str = "http://127.0.0.1:8003"
    payments_url: str = "http://127.0.0.1:8004"
    upstream_timeout: float = 5.0
    # The credential services present to each other's /internal routes (header X-Shop-Service-Token).
    # The gateway never forwards that header from outside, and never routes /internal.
    internal_token: str = DEV_INTERNAL_TOKEN

    log_level: str = "INFO"
    log_json: bool = True
    max_body_bytes: int = 1_000_000
    frontend_url: str | None = None

    @model_validator(mode="after")
    def _production_needs_real_secrets(self) -> KitSettings:
        if self.environment == "production":
            missing = self.production_problems()
            if missing:
                raise ValueError("refusing to start in production: " + "; ".join(missing))
        return self

    def production_problems(self) -> list[str]:
        problems = []
        if self.uses_database_and_bus and not self.database_url:
            problems.append("SHOP_DATABASE_URL is not set")
        if self.uses_database_and_bus and not self.amqp_url:
            problems.append("SHOP_AMQP_URL is not set")
        if not self.jwt_public_key:
            problems.append("SHOP_JWT_PUBLIC_KEY is not set")
        if self.internal_token == DEV_INTERNAL_TOKEN or len(self.internal_token) < 32:
            problems.append("SHOP_INTERNAL_TOKEN is not set (at least 32 random characters)")
        return problems

    def service_database_url(self, service: str) -> str:
        """The URL a service connects with: its own role on PostgreSQL, or its own SQLite file."""
        if not self.database_url:
            self.var_dir.mkdir(parents=True, exist_ok=True)
            return f"sqlite:///{(self.var_dir / f'{service}.db').resolve()}"
        parts = urlsplit(self.database_url)
        host = parts.hostname or "127.0.0.1"
        port = f":{parts.port}" if parts.port else ""
        role = service_role(service)
        password = quote(self.role_password(service), safe="")
        scheme = "postgresql+psycopg2"
        return urlunsplit((scheme, f"{role}:{password}@{host}{port}", parts.path, parts.query, ""))

    def role_password(self, service: str) -> str:
        """The password of the service's role: its own, else the shared one, else (outside production)
        the development default. Production refuses to connect or provision without a real one."""
        own: str | None = getattr(self, f"db_password_{service}", None)
        password = own or self.db_role_password
        dev_default = f"{service_role(service)}{DEV_ROLE_PASSWORD_SUFFIX}"
        if self.environment == "production" and password in (None, "", dev_default):
            raise ValueError(
                f"refusing to start in production: SHOP_DB_PASSWORD_{service.upper()} "
                "(or SHOP_DB_ROLE_PASSWORD) is not set"
            )
        return password or dev_default


def service_role(service: str) -> str:
    return f"shop_{service}"
