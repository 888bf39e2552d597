"""Prometheus figures of the kit: the outbox backlog and the dead letters of every service runtime in
this process (one in distributed mode, four in the all-in-one), read at scrape time so never stale;
and the counters services bump themselves (repairs made by reconciling with a provider)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from prometheus_client import REGISTRY, Counter
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from shopkit.outbox import backlog

if TYPE_CHECKING:
    from shopkit.lifecycle import ServiceRuntime

log = logging.getLogger("shopkit.metrics")

# One per repair a reconciliation made: a payment the provider says is paid, failed or refunded
# while the shop had not heard (a lost webhook or callback, a refund made in the provider's dashboard).
RECONCILED = Counter("shop_reconciled_total", "Repairs made by reconciling with a provider", ["provider", "kind"])


class _BacklogCollector(Collector):
    def __init__(self) -> None:
        self.runtimes: dict[str, ServiceRuntime] = {}

    def collect(self) -> Any:
        outbox_gauge = GaugeMetricFamily(
            "shop_outbox_messages", "Outbox rows not yet sent", labels=["service", "status"]
        )
        dlq = GaugeMetricFamily("shop_dead_letters", "Messages the service's consumer gave up on", labels=["service"])
        for name, runtime in list(self.runtimes.items()):
            try:
                with runtime.db.engine.connect() as connection:
                    for status, count in backlog(connection).items():
                        outbox_gauge.add_metric([name, status], count)
            except Exception:
                log.debug("outbox backlog unavailable", exc_info=True)
            dlq.add_metric([name], runtime.dead_letters)
        yield outbox_gauge
        yield dlq


_collector = _BacklogCollector()
REGISTRY.register(_collector)


def watch_runtime(runtime: ServiceRuntime) -> None:
    _collector.runtimes[runtime.name] = runtime
