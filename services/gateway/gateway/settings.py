"""Gateway settings (environment, prefix SHOP_)."""

from __future__ import annotations

from typing import Annotated, ClassVar

from pydantic import Field, model_validator

from shopkit.settings import KitSettings


class GatewaySettings(KitSettings):
    uses_database_and_bus: ClassVar[bool] = False

    # One JSON line per request at the edge (method, path, status, duration, trace id).
    access_log: bool = True
    rate_limit_enabled: bool = True
    rate_limit_user_rate: Annotated[float, Field(gt=0)] = 50.0
    rate_limit_user_burst: Annotated[float, Field(ge=1)] = 100.0
    rate_limit_anon_rate: Annotated[float, Field(gt=0)] = 100.0
    rate_limit_anon_burst: Annotated[float, Field(ge=1)] = 200.0
    # Payment webhooks and the bKash callback, per address: providers send bursts from few addresses.
    rate_limit_callback_rate: Annotated[float, Field(gt=0)] = 500.0
    rate_limit_callback_burst: Annotated[float, Field(ge=1)] = 1000.0
    # Buckets kept per limit in this process (least recently used evicted first).
    rate_limit_max_keys: Annotated[int, Field(ge=1)] = 100_000
    # Shared buckets for every gateway replica; unset: each process keeps its own.
    rate_limit_redis_url: str | None = None
    rate_limit_redis_prefix: str = "shop:ratelimit:"
    # Seconds a request may wait for Redis before it is decided by the local buckets.
    rate_limit_redis_timeout: Annotated[float, Field(gt=0)] = 0.1
    # How many proxies of our own stand in front of the gateway: the client address is then the
    # N-th from the right of X-Forwarded-For. 0: the TCP peer, and X-Forwarded-For is ignored.
    trusted_proxies: Annotated[int, Field(ge=0)] = 0
    # /metrics, /healthz and /readyz for operators, one port per replica; unset: no such port.
    gateway_internal_port: Annotated[int | None, Field(ge=1, le=65535)] = None
    gateway_internal_host: str = "127.0.0.1"
    openapi_cache_seconds: float = 60.0
    # Replaced by trusted_proxies: refused rather than ignored, so a deployment that set it learns.
    trust_forwarded_for: bool | None = None

    @model_validator(mode="after")
    def _no_boolean_proxy_trust(self) -> GatewaySettings:
        if self.trust_forwarded_for is not None:
            raise ValueError(
                "SHOP_TRUST_FORWARDED_FOR is no longer read: set SHOP_TRUSTED_PROXIES to the number of proxies "
                "in front of the gateway (the client address is then the N-th from the right of X-Forwarded-For)"
            )
        return self
