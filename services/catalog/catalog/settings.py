"""Settings of the catalog service (environment, prefix SHOP_)."""

from __future__ import annotations

from shopkit.settings import KitSettings


class CatalogSettings(KitSettings):
    pass
