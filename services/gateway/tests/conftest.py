from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from shopkit.settings import KitSettings
from shopkit.testing import mint_access_token


@pytest.fixture
def kit_settings(tmp_path: Path) -> KitSettings:
    return KitSettings(var_dir=tmp_path)


@pytest.fixture
def mint(kit_settings: KitSettings) -> Callable[..., str]:
    def _mint(role: str = "customer", sub: uuid.UUID | None = None, **overrides: object) -> str:
        return mint_access_token(kit_settings, role=role, user_id=sub, **overrides)

    return _mint
