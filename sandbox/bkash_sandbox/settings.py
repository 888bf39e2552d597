from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class BkashSandboxSettings(BaseSettings):
    """The merchant credentials the fake bKash accepts and its clocks.

    The defaults are bKash's public sandbox credentials, which are also the shop's defaults, so an
    unconfigured shop talks to an unconfigured sandbox without any setup.
    """

    model_config = SettingsConfigDict(
        env_prefix="SHOP_SANDBOX_BKASH_", env_file=".env", extra="ignore", populate_by_name=True
    )

    app_key: str = "4f6o0cjiki2rfm34kfdadl1eqq"
    app_secret: str = "2is7hdktrekvrbljjh44ll3d9l1dtjo4pasmjvs5vl5qr3fug4b"
    username: str = "sandboxTokenizedUser02"
    password: str = "sandboxTokenizedUser02@12345"
    token_lifetime: int = 3600
    refresh_token_lifetime: int = 28 * 24 * 3600
    # A payment not executed within this window expires, as on bKash (24 h).
    payment_window: int = 24 * 3600
    # How long a lost Execute answer (the execute-timeout control) holds the connection at most: a
    # little longer than the payments service's bKash client waits (SHOP_BKASH_TIMEOUT, 10 s).
    execute_timeout_hold: float = Field(default=15.0, gt=0)
    # Unset: state in memory only. Set: kept in <dir>/bkash.sqlite3 and read back at start-up.
    state_dir: Path | None = Field(default=None, validation_alias="SHOP_SANDBOX_STATE_DIR")
