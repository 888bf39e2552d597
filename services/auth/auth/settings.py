"""Settings of the auth service (environment, prefix SHOP_)."""

from __future__ import annotations

from shopkit.settings import KitSettings

# The development admin's password (also what contract_smoke.py assumes); production refuses it.
DEFAULT_ADMIN_EMAIL = "admin@example.com"
DEFAULT_ADMIN_PASSWORD = "Admin-Pass-123"


class AuthSettings(KitSettings):
    # The admin ensured at start-up; an empty password turns that off.
    admin_email: str = DEFAULT_ADMIN_EMAIL
    admin_password: str = DEFAULT_ADMIN_PASSWORD

    access_token_ttl: int = 15 * 60  # seconds
    refresh_token_ttl: int = 14 * 24 * 3600  # seconds
    # Failed logins of one email from one client address within the window lock that pair (429).
    login_max_failures: int = 5
    login_failure_window: int = 15 * 60  # seconds
    # Failures of the email from other addresses past login_max_failures delay each attempt by the step,
    # doubling per further failure, up to the max (seconds): a slowdown, never a lock-out.
    login_slowdown_step: float = 0.05
    login_slowdown_max: float = 1.0
    # Password hashes computed at once (each holds argon2's 19 MiB: this bounds peak memory too), how
    # many logins and registrations may wait in line for one, and for how long (seconds, from arrival)
    # before they are told 503 + Retry-After. A hash takes ~50 ms, so a second of line serves ~40 logins
    # on two slots; the rest of the gateway's upstream_timeout (5 s) is left for the hash, the database
    # and a machine short of CPU.
    password_hash_concurrency: int = 2
    password_hash_queue: int = 32
    password_hash_max_wait: float = 1.0
    prune_interval: float = 3600  # seconds between sweeps of expired refresh tokens and old failures

    def production_problems(self) -> list[str]:
        problems = super().production_problems()
        if not self.jwt_private_key:
            problems.append("SHOP_JWT_PRIVATE_KEY is not set (auth signs the access tokens)")
        if self.admin_password == DEFAULT_ADMIN_PASSWORD:
            problems.append("SHOP_ADMIN_PASSWORD is the development default")
        return problems
