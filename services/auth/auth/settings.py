"""Settings of the auth service (environment, prefix SHOP_)."""
from __future__ import annotations

from shopkit.settings import KitSettings


class AuthSettings(KitSettings):
    pass
