"""The distributed mode's plan: which processes run, on which ports, and the small helpers the
supervisor uses to watch them."""

from __future__ import annotations

import contextlib
import ctypes
import http.client
import signal
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

REPO_ROOT = Path(__file__).resolve().parents[2]

# name -> (python module, port offset from the base port, readiness path; None = any HTTP answer on /)
PROCESSES: dict[str, tuple[str, int, str | None]] = {
    "auth": ("auth", 1, "/readyz"),
    "catalog": ("catalog", 2, "/readyz"),
    "orders": ("orders", 3, "/readyz"),
    "payments": ("payments", 4, "/readyz"),
    "stripe-sandbox": ("sandbox.stripe_sandbox", 10, None),
    "bkash-sandbox": ("sandbox.bkash_sandbox", 11, None),
    "gateway": ("gateway", 0, "/readyz"),
}
SERVICES = ("auth", "catalog", "orders", "payments")
# Replica k (k >= 2) of a service listens on base + 100 * (k - 1) + its offset: catalog-2 on 8102.
# Gateway replicas share the public port (SO_REUSEPORT); each has its own internal port (metrics,
# readiness) at base + 90 + 100 * (k - 1): gateway-2's on 8190.
REPLICA_PORT_STEP = 100
GATEWAY_INTERNAL_OFFSET = 90

MIN_BACKOFF = 0.5
MAX_BACKOFF = 30.0
# A process that stayed up this long is healthy again: its next death restarts it at once.
STABLE_AFTER = 30.0


@dataclass
class Member:
    """One supervised process (a service replica, the gateway or a sandbox)."""

    name: str
    module: str
    port: int
    ready_path: str | None
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    restarts: int = 0
    backoff: float = MIN_BACKOFF
    next_start_at: float = 0.0
    # True while the process is down on purpose (stop, restart, a kill the caller restarts itself).
    held: bool = False
    internal_port: int | None = None
    reuse_port: bool = False
    peak_rss_mb: float = 0.0
    log_handle: IO[bytes] | None = field(default=None, repr=False)

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None


def sandboxes_not_allowed(env: Mapping[str, str]) -> set[str]:
    """A sandbox never stands beside real provider keys, nor in production (payments decides, from
    this environment as the children get it): its port stays closed."""
    from payments.settings import sandbox_plan

    plan = sandbox_plan(env)
    return {name for name, allowed in (("stripe-sandbox", plan.stripe), ("bkash-sandbox", plan.bkash)) if not allowed}


def parse_replicas(text: str) -> dict[str, int]:
    replicas: dict[str, int] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, _, count = part.partition("=")
        if name not in (*SERVICES, "gateway") or not count.isdigit() or int(count) < 1:
            known = ", ".join((*SERVICES, "gateway"))
            raise ValueError(f"bad replica spec {part!r}: use service=N with a service of {known}")
        replicas[name] = int(count)
    return replicas


def parse_env(pairs: Iterable[str]) -> dict[str, str]:
    env: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"bad --env {pair!r}: use KEY=VALUE")
        env[key] = value
    return env


def free_base_port(replicas: Mapping[str, int] | None = None, start: int = 20000, stop: int | None = None) -> int:
    """A base port whose whole port plan (every process and replica) is free on this machine now.

    The plan stays below the kernel's ephemeral range: a readiness probe of a port nothing listens on
    yet can otherwise be given that very port as its source and connect to itself (it reads back its
    own request), and the service then cannot bind it."""
    import random
    import socket

    from shopkit.testing import ephemeral_port_floor

    stop = stop or max(start + 2000, ephemeral_port_floor())

    offsets = [o for _, o, _ in PROCESSES.values()] + [GATEWAY_INTERNAL_OFFSET]
    most = max([1, *(replicas or {}).values()])
    plan = [REPLICA_PORT_STEP * k + o for k in range(most) for o in offsets]
    for _ in range(200):
        base = random.randrange(start, stop - max(plan), 10)
        try:
            for offset in plan:
                with socket.socket() as probe:
                    probe.bind(("127.0.0.1", base + offset))
        except OSError:
            continue
        return base
    raise RuntimeError("no free port range found")


def die_with_parent() -> None:
    # A supervisor killed with -9 must not leave orphaned services holding the ports.
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def http_status(url: str, timeout: float = 2.0) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except (OSError, ValueError, http.client.HTTPException):
        return None


def read_rss_mb(pid: int, field_name: str = "VmRSS") -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field_name + ":"):
                return int(line.split()[1]) / 1024.0
    except (OSError, ValueError, IndexError):
        pass
    return 0.0
