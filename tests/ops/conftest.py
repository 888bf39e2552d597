"""Static checks of what operators run: the lock, the image, the compose files, the Kubernetes manifests.
Nothing here builds or starts a container (no engine on the development and CI machines)."""

from __future__ import annotations

import os
import secrets
import shutil
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
ENV_EXAMPLE = REPO_ROOT / ".env.example"
OPS_BIN = REPO_ROOT / ".venv-ops" / "bin"
NPM_BIN = REPO_ROOT / "requirements" / "npm" / "node_modules" / ".bin"


def tool(path: Path | str) -> str:
    """A checker's executable; missing: skipped locally (`make ops-tools` installs them), fails in CI."""
    found = shutil.which(str(path)) if not isinstance(path, Path) else (str(path) if path.exists() else None)
    if found is None:
        message = f"{path} is not installed: run `make ops-tools` (CI does)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return found


def env_example_names() -> list[str]:
    names = []
    for line in ENV_EXAMPLE.read_text().splitlines():
        if line and not line[0].isspace() and not line.startswith("#") and "=" in line:
            names.append(line.split("=", 1)[0])
    return names


def production_values() -> dict[str, str]:
    """A filled-in .env: a distinct random value per variable, shaped as the shop's checks want."""
    shaped = {
        "SHOP_PUBLIC_URL": "https://shop.example.com",
        "SHOP_ADMIN_EMAIL": "owner@shop.example.com",
        "BKASH_BASE_URL": "https://tokenized.pay.bka.sh/v1.2.0-beta",
        "SHOP_FRONTEND_URL": "https://www.shop.example.com/paid",
    }
    values = {}
    for name in env_example_names():
        token = secrets.token_hex(20)
        if name in shaped:
            values[name] = shaped[name]
        elif name == "STRIPE_SECRET_KEY":
            values[name] = f"sk_live_{token}"
        elif name == "STRIPE_WEBHOOK_SECRET":
            values[name] = f"whsec_{token}"
        elif name.startswith("SHOP_JWT_"):
            values[name] = f"-----BEGIN {name}-----\n{token}\n-----END {name}-----"
        else:
            values[name] = f"{name.lower()}-{token}"
    return values


@pytest.fixture
def production_env() -> dict[str, str]:
    return production_values()
