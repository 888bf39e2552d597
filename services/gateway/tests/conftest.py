from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from pathlib import Path

import jwt
import pytest

from shopkit.auth import load_keys
from shopkit.settings import KitSettings


@pytest.fixture
def kit_settings(tmp_path: Path) -> KitSettings:
    return KitSettings(var_dir=tmp_path)


@pytest.fixture
def mint(kit_settings: KitSettings) -> Callable[..., str]:
    keys = load_keys(kit_settings)

    def _mint(role: str = "customer", sub: uuid.UUID | None = None, **overrides: object) -> str:
        now = int(time.time())
        claims: dict[str, object] = {
            "sub": str(sub or uuid.uuid4()),
            "role": role,
            "iat": now,
            "exp": now + 900,
            "iss": kit_settings.jwt_issuer,
            "aud": kit_settings.jwt_audience,
            "jti": uuid.uuid4().hex,
        }
        claims.update(overrides)
        return jwt.encode(claims, keys.private_pem, algorithm="EdDSA")  # type: ignore[arg-type]

    return _mint
