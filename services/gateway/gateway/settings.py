"""Gateway settings (environment, prefix SHOP_)."""

from __future__ import annotations

from shopkit.settings import KitSettings


class GatewaySettings(KitSettings):
    rate_limit_enabled: bool = True
    rate_limit_user_rate: float = 50.0
    rate_limit_user_burst: float = 100.0
    rate_limit_anon_rate: float = 100.0
    rate_limit_anon_burst: float = 200.0
    # Only with a trusted proxy in front: take the client address from X-Forwarded-For.
    trust_forwarded_for: bool = False
    openapi_cache_seconds: float = 60.0
