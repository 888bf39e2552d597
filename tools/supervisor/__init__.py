"""Distributed mode: one process per service, plus the provider sandboxes, against PostgreSQL and RabbitMQ.

    python -m tools.supervisor [--replicas catalog=2,gateway=2] [--env KEY=VALUE ...] [--only a,b]
                               [--log-dir var/log] [--base-port 8000]

It provisions the database (schemas and roles), starts every process, waits until each answers its
readiness probe, prints their URLs, restarts a process that dies (with back-off) and stops them all
on Ctrl-C / SIGTERM. The end-to-end tests and the benchmark use the same `Cluster` as a library.
"""

from __future__ import annotations

from tools.supervisor.cluster import Cluster
from tools.supervisor.plan import (
    GATEWAY_INTERNAL_OFFSET,
    PROCESSES,
    REPLICA_PORT_STEP,
    REPO_ROOT,
    SERVICES,
    Member,
    free_base_port,
    parse_env,
    parse_replicas,
    read_rss_mb,
    sandboxes_not_allowed,
)

__all__ = [
    "GATEWAY_INTERNAL_OFFSET",
    "PROCESSES",
    "REPLICA_PORT_STEP",
    "REPO_ROOT",
    "SERVICES",
    "Cluster",
    "Member",
    "free_base_port",
    "parse_env",
    "parse_replicas",
    "read_rss_mb",
    "sandboxes_not_allowed",
]
