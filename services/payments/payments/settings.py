"""Settings of the payments service (environment, prefix SHOP_)."""
from __future__ import annotations

from shopkit.settings import KitSettings


class PaymentsSettings(KitSettings):
    pass
