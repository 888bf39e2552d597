"""Sandboxes never stand beside real provider keys: the all-in-one mounts /sandbox/stripe only while
STRIPE_SECRET_KEY is unset and /sandbox/bkash only while the BKASH_* merchant credentials are unset;
the distributed mode leaves the sandbox ports closed once keys are configured."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from shopkit.testing import free_port
from tools.supervisor import REPO_ROOT

from .conftest import running_shop

pytestmark = pytest.mark.e2e

STRIPE_KEYS = {"STRIPE_SECRET_KEY": "sk_live_e2e_not_a_sandbox_key", "STRIPE_WEBHOOK_SECRET": "whsec_e2e_endpoint"}
BKASH_KEYS = {
    "BKASH_APP_KEY": "e2e-merchant-app-key",
    "BKASH_APP_SECRET": "e2e-merchant-app-secret",
    "BKASH_USERNAME": "e2e-merchant",
    "BKASH_PASSWORD": "e2e-merchant-password",
}
PROVIDER_VARIABLES = (*STRIPE_KEYS, *BKASH_KEYS, "STRIPE_API_BASE", "BKASH_BASE_URL")


def _status(url: str) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except OSError:
        return None


@contextmanager
def all_in_one(tmp_path: Path, **keys: str) -> Iterator[str]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in PROVIDER_VARIABLES and not k.startswith("SHOP_")}
    env.update({"SHOP_VAR_DIR": str(tmp_path / "var"), "SHOP_ENVIRONMENT": "test", **keys})
    tmp_path.mkdir(parents=True, exist_ok=True)
    log = open(tmp_path / f"allinone-{port}.log", "wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "allinone", "--port", str(port)], cwd=REPO_ROOT, env=env, stdout=log, stderr=log
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while _status(f"{base}/healthz") != 200:
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the all-in-one did not start:\n{(tmp_path / f'allinone-{port}.log').read_text()[-3000:]}")
            time.sleep(0.3)
        yield base
    finally:
        process.terminate()
        process.wait(30)
        log.close()


def test_the_all_in_one_mounts_a_sandbox_only_while_its_provider_has_no_keys(tmp_path: Path) -> None:
    with all_in_one(tmp_path / "none") as base:
        assert (_status(f"{base}/sandbox/stripe/"), _status(f"{base}/sandbox/bkash/")) == (200, 200)
    with all_in_one(tmp_path / "stripe", **STRIPE_KEYS) as base:
        assert (_status(f"{base}/sandbox/stripe/"), _status(f"{base}/sandbox/bkash/")) == (404, 200)
        assert _status(f"{base}/sandbox/stripe/v1/checkout/sessions") == 404
    with all_in_one(tmp_path / "both", **STRIPE_KEYS, **BKASH_KEYS) as base:
        assert (_status(f"{base}/sandbox/stripe/"), _status(f"{base}/sandbox/bkash/")) == (404, 404)
        assert _status(f"{base}/readyz") == 200


def _port_open(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(1)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def test_the_distributed_mode_keeps_the_sandbox_ports_closed_with_keys(tmp_path: Path) -> None:
    with running_shop(tmp_path, **STRIPE_KEYS, **BKASH_KEYS) as shop:
        assert "stripe-sandbox" not in shop.cluster.members and "bkash-sandbox" not in shop.cluster.members
        assert not _port_open(shop.cluster.port("stripe-sandbox"))
        assert not _port_open(shop.cluster.port("bkash-sandbox"))
        assert _status(f"{shop.cluster.url('payments')}/readyz") == 200


def test_the_distributed_mode_runs_both_sandboxes_without_keys(shop) -> None:  # type: ignore[no-untyped-def]
    assert _port_open(shop.cluster.port("stripe-sandbox")) and _port_open(shop.cluster.port("bkash-sandbox"))
