"""Settings of the orders service (environment, prefix SHOP_)."""
from __future__ import annotations

from shopkit.settings import KitSettings


class OrdersSettings(KitSettings):
    pass
