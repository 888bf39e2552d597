from __future__ import annotations

from pydantic_settings import BaseSettings, SettingsConfigDict


class BkashSandboxSettings(BaseSettings):
    """The merchant credentials the fake bKash accepts and its clocks.

    The defaults are bKash's public sandbox credentials, which are also the shop's defaults, so an
    unconfigured shop talks to an unconfigured sandbox without any setup.
    """

    model_config = SettingsConfigDict(env_prefix="SHOP_SANDBOX_BKASH_", env_file=".env", extra="ignore")

    app_key: str = "4f6o0cjiki2rfm34kfdadl1eqq"
    app_secret: str = "2is7hdktrekvrbljjh44ll3d9l1dtjo4pasmjvs5vl5qr3fug4b"
    username: str = "sandboxTokenizedUser02"
    password: str = "sandboxTokenizedUser02@12345"
    token_lifetime: int = 3600
    refresh_token_lifetime: int = 28 * 24 * 3600
    # A payment not executed within this window expires, as on bKash (24 h).
    payment_window: int = 24 * 3600
