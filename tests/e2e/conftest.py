"""The whole shop in distributed mode (one process per service, the gateway, both sandboxes) on a fresh
PostgreSQL database and a private RabbitMQ namespace. Tests talk HTTP to the gateway and the sandboxes only.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from shopkit import testing
from tools.supervisor import Cluster, free_base_port

ADMIN_EMAIL = "e2e-admin@example.com"
ADMIN_PASSWORD = "e2e-admin-password"
READY_TIMEOUT = 90.0


@dataclass
class Shop:
    cluster: Cluster
    amqp_url: str

    @property
    def gateway(self) -> str:
        return self.cluster.url("gateway")

    @property
    def stripe(self) -> str:
        return self.cluster.url("stripe-sandbox")

    @property
    def bkash(self) -> str:
        return self.cluster.url("bkash-sandbox")


@contextmanager
def running_shop(log_dir: Path, **env: str) -> Iterator[Shop]:
    amqp = testing.amqp_url()
    with testing.fresh_database() as database_url:
        cluster = Cluster(
            database_url=database_url,
            amqp_url=amqp,
            base_port=free_base_port(),
            log_dir=log_dir,
            env={
                "SHOP_BUS_NAMESPACE": f"e2e{uuid.uuid4().hex[:8]}.",
                "SHOP_VAR_DIR": str(log_dir / "var"),
                "SHOP_ADMIN_EMAIL": ADMIN_EMAIL,
                "SHOP_ADMIN_PASSWORD": ADMIN_PASSWORD,
                "SHOP_ENVIRONMENT": "test",
                # Short retry pauses so a message that failed while a peer restarted is retried soon.
                "SHOP_RETRY_DELAYS": "[0.5, 1, 2, 4, 8]",
                # Webhooks keep being retried across a payments restart (Stripe retries for days).
                "SHOP_SANDBOX_STRIPE_WEBHOOK_RETRY_DELAYS": "[1, 2, 3, 5, 5, 10, 10, 15, 20, 30]",
                # Re-drive a saga stuck after a crash within the tests' patience, not after a minute.
                "SHOP_ORDER_SWEEP_INTERVAL": "2",
                "SHOP_ORDER_STUCK_AFTER": "15",
                **env,
            },
            restart_on_death=True,
        )
        cluster.start()
        try:
            try:
                cluster.wait_ready(READY_TIMEOUT)
            except TimeoutError as exc:
                tails = "\n".join(f"--- {n}\n{cluster.log_tail(n, 15)}" for n in cluster.names)
                pytest.fail(f"{exc}\n{tails}", pytrace=False)
            yield Shop(cluster, amqp)
        finally:
            cluster.stop()


@pytest.fixture(scope="session")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shop]:
    """One shop for the whole session (the saga's timeouts at their defaults)."""
    with running_shop(tmp_path_factory.mktemp("e2e-shop")) as running:
        yield running


@pytest.fixture(scope="session")
def impatient_shop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shop]:
    """A second shop whose orders expire after a few seconds without payment."""
    with running_shop(
        tmp_path_factory.mktemp("e2e-impatient-shop"),
        SHOP_ORDER_PAYMENT_TIMEOUT="5",
        SHOP_ORDER_SWEEP_INTERVAL="1",
    ) as running:
        yield running
