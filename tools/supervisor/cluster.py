"""The supervisor as a library: start, watch, restart and stop the distributed mode's processes (the
end-to-end tests and the benchmark use it)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Mapping
from pathlib import Path

from tools.supervisor.plan import (
    GATEWAY_INTERNAL_OFFSET,
    MAX_BACKOFF,
    MIN_BACKOFF,
    PROCESSES,
    REPLICA_PORT_STEP,
    REPO_ROOT,
    STABLE_AFTER,
    Member,
    die_with_parent,
    http_status,
    read_rss_mb,
    sandboxes_not_allowed,
)


class Cluster:
    """The distributed mode as a library: start, probe, kill, restart and stop the processes."""

    def __init__(
        self,
        *,
        database_url: str | None = None,
        amqp_url: str | None = None,
        base_port: int = 8000,
        host: str = "127.0.0.1",
        replicas: Mapping[str, int] | None = None,
        env: Mapping[str, str] | None = None,
        only: Iterable[str] | None = None,
        log_dir: Path | None = None,
        restart_on_death: bool = True,
        provision: bool = True,
        python: str | None = None,
    ) -> None:
        self.database_url = database_url if database_url is not None else os.environ.get("SHOP_DATABASE_URL")
        self.amqp_url = amqp_url if amqp_url is not None else os.environ.get("SHOP_AMQP_URL")
        self.base_port = base_port
        self.host = host
        self.extra_env = dict(env or {})
        self.log_dir = log_dir
        self.restart_on_death = restart_on_death
        self.provision = provision
        self.python = python or sys.executable
        wanted = set(only) if only else set(PROCESSES)
        unknown = wanted - set(PROCESSES)
        if unknown:
            names = ", ".join(sorted(unknown))
            raise ValueError(f"unknown process(es) {names}; known: {', '.join(PROCESSES)}")
        wanted -= sandboxes_not_allowed(self.extra_env)
        self.members: dict[str, Member] = {}
        for name, (module, offset, ready) in PROCESSES.items():
            if name not in wanted:
                continue
            count = (replicas or {}).get(name, 1)
            for k in range(1, count + 1):
                member_name = name if k == 1 else f"{name}-{k}"
                if name == "gateway":
                    internal = base_port + REPLICA_PORT_STEP * (k - 1) + GATEWAY_INTERNAL_OFFSET
                    member = Member(member_name, module, base_port + offset, ready, internal_port=internal)
                    member.reuse_port = count > 1
                else:
                    member = Member(member_name, module, base_port + REPLICA_PORT_STEP * (k - 1) + offset, ready)
                self.members[member_name] = member
        self._lock = threading.RLock()
        self._stopping = threading.Event()
        self._monitor: threading.Thread | None = None

    # Addresses

    def port(self, name: str) -> int:
        return self.members[name].port if name in self.members else self.base_port + PROCESSES[name][1]

    def url(self, name: str) -> str:
        return f"http://{self.host}:{self.port(name)}"

    def internal_url(self, name: str) -> str:
        """A gateway replica's own port (/metrics, /readyz): its public port may be shared."""
        return f"http://{self.host}:{self.members[name].internal_port}"

    @property
    def names(self) -> list[str]:
        return list(self.members)

    def environment(self) -> dict[str, str]:
        """What every child gets: this process's environment, the wiring between the processes, then
        the caller's explicit overrides."""
        env = dict(os.environ)
        # glibc gives each thread that allocates its own malloc arena; with a threadpool that is most
        # of a service's resident memory and none of its speed. Two arenas are plenty here.
        env.setdefault("MALLOC_ARENA_MAX", "2")
        env.update(self.wiring())
        env.update(self.extra_env)
        return env

    def wiring(self) -> dict[str, str]:
        """The variables that connect the processes to each other, the database and the broker (the
        compose file and the Kubernetes manifests are checked against these)."""
        gateway = self.url("gateway")
        wiring = {
            "SHOP_PUBLIC_URL": gateway,
            "SHOP_AUTH_URL": self.url("auth"),
            "SHOP_CATALOG_URL": self.url("catalog"),
            "SHOP_ORDERS_URL": self.url("orders"),
            "SHOP_PAYMENTS_URL": self.url("payments"),
            # Payments uses the sandboxes while no real provider keys are configured.
            "SHOP_SANDBOX_STRIPE_URL": self.url("stripe-sandbox"),
            "SHOP_SANDBOX_BKASH_URL": self.url("bkash-sandbox"),
            "SHOP_SANDBOX_STRIPE_WEBHOOK_URL": f"{gateway}/api/payments/webhooks/stripe",
            "PYTHONUNBUFFERED": "1",
        }
        if self.database_url:
            wiring["SHOP_DATABASE_URL"] = self.database_url
        if self.amqp_url:
            wiring["SHOP_AMQP_URL"] = self.amqp_url
        return wiring

    def command(self, name: str) -> list[str]:
        member = self.members[name]
        command = [self.python, "-m", member.module, "--host", self.host, "--port", str(member.port)]
        return [*command, "--reuse-port"] if member.reuse_port else command

    # Life cycle

    def start(self) -> Cluster:
        if self.provision and self.database_url:
            from shopkit.provision import provision

            provision(self.database_url)
        if self.log_dir:
            self.log_dir.mkdir(parents=True, exist_ok=True)
        self._stopping.clear()
        with self._lock:
            for member in self.members.values():
                member.held = False
                self._spawn(member)
        self._monitor = threading.Thread(target=self._watch, name="cluster-monitor", daemon=True)
        self._monitor.start()
        return self

    def _spawn(self, member: Member) -> None:
        command = self.command(member.name)
        env = self.environment()
        if member.internal_port is not None:
            env["SHOP_GATEWAY_INTERNAL_PORT"] = str(member.internal_port)
        if member.log_handle is None and self.log_dir:
            member.log_handle = open(self.log_dir / f"{member.name}.log", "ab")
        output = member.log_handle
        if output is not None:
            output.write(f"\n=== {time.strftime('%H:%M:%S')} start {' '.join(command)}\n".encode())
            output.flush()
        member.process = subprocess.Popen(
            command,
            cwd=REPO_ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT if output is not None else None,
            # Own process group: a Ctrl-C at the terminal reaches the supervisor only, which then
            # stops the children in order.
            start_new_session=True,
            preexec_fn=die_with_parent,
        )
        member.started_at = time.monotonic()

    def _watch(self) -> None:
        while not self._stopping.is_set():
            with self._lock:
                now = time.monotonic()
                for member in self.members.values():
                    if member.alive:
                        member.peak_rss_mb = max(member.peak_rss_mb, self._peak_of(member))
                        if now - member.started_at > STABLE_AFTER:
                            member.backoff = MIN_BACKOFF
                        continue
                    if member.held or not self.restart_on_death or member.process is None:
                        continue
                    if member.next_start_at == 0.0:
                        member.next_start_at = now + member.backoff
                        code = member.process.returncode
                        self._note(member, f"exited with {code}; restarting in {member.backoff:.1f}s")
                        member.backoff = min(member.backoff * 2, MAX_BACKOFF)
                    elif now >= member.next_start_at:
                        member.next_start_at = 0.0
                        member.restarts += 1
                        self._spawn(member)
            self._stopping.wait(0.2)

    def _peak_of(self, member: Member) -> float:
        assert member.process is not None
        return max(read_rss_mb(member.process.pid, "VmHWM"), read_rss_mb(member.process.pid))

    def _note(self, member: Member, message: str) -> None:
        line = f"[supervisor] {member.name}: {message}"
        if member.log_handle is not None:
            member.log_handle.write(f"=== {line}\n".encode())
            member.log_handle.flush()
        print(line, file=sys.stderr, flush=True)

    def is_ready(self, name: str) -> bool:
        member = self.members[name]
        if not member.alive:
            return False
        # A replica sharing its port is asked on its own: the shared one may answer for another.
        base = self.internal_url(name) if member.reuse_port else self.url(name)
        status = http_status(f"{base}{member.ready_path or '/'}")
        return status == 200 if member.ready_path else status is not None

    def wait_ready(
        self, timeout: float = 60.0, names: Iterable[str] | None = None, cancel: threading.Event | None = None
    ) -> None:
        pending = set(names or self.members)
        deadline = time.monotonic() + timeout
        while pending and not (cancel and cancel.is_set()):
            pending = {name for name in pending if not self.is_ready(name)}
            if not pending:
                return
            if time.monotonic() > deadline:
                details = "; ".join(f"{n} ({self._describe(n)})" for n in sorted(pending))
                raise TimeoutError(f"not ready after {timeout:.0f}s: {details}")
            time.sleep(0.2)

    def _describe(self, name: str) -> str:
        member = self.members[name]
        if member.process is None:
            return "never started"
        if not member.alive:
            return f"exited with {member.process.returncode}, restarts {member.restarts}"
        return f"running as pid {member.process.pid}, {self.url(name)}{member.ready_path or '/'} not ready"

    def kill(self, name: str, sig: int = signal.SIGKILL, *, hold: bool = False) -> int:
        """Signal a process; the monitor restarts it unless `hold` (then call `restart`). Its pid."""
        with self._lock:
            member = self.members[name]
            if not member.alive:
                raise RuntimeError(f"{name} is not running")
            assert member.process is not None
            member.held = hold
            pid = member.process.pid
            member.process.send_signal(sig)
        return pid

    def restart(self, name: str, *, timeout: float = 10.0) -> None:
        """Stop (if running) and start again at once, without back-off."""
        with self._lock:
            member = self.members[name]
            member.held = True
        self._terminate([member], timeout)
        with self._lock:
            member.held = False
            member.next_start_at = 0.0
            member.restarts += 1
            self._spawn(member)

    def wait_exit(self, name: str, timeout: float = 10.0) -> int | None:
        process = self.members[name].process
        if process is None:
            return None
        with contextlib.suppress(subprocess.TimeoutExpired):
            return process.wait(timeout)
        return None

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM every process (the gateway first, so no new work arrives), SIGKILL what lingers."""
        self._stopping.set()
        if self._monitor is not None:
            self._monitor.join(timeout=5)
        with self._lock:
            for member in self.members.values():
                member.held = True
        order = sorted(self.members.values(), key=lambda m: (m.module != "gateway", m.module.startswith("sandbox")))
        self._terminate(order, timeout)
        for member in self.members.values():
            if member.log_handle is not None:
                member.log_handle.close()
                member.log_handle = None

    def _terminate(self, members: list[Member], timeout: float) -> None:
        for member in members:
            if member.alive:
                assert member.process is not None
                with contextlib.suppress(ProcessLookupError):
                    member.process.terminate()
        deadline = time.monotonic() + timeout
        for member in members:
            if member.process is None:
                continue
            try:
                member.process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self._note(member, f"did not stop within {timeout:.0f}s; killing")
                with contextlib.suppress(ProcessLookupError):
                    member.process.kill()
                member.process.wait(5)

    def __enter__(self) -> Cluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # Observation

    def pids(self) -> dict[str, int | None]:
        return {name: (m.process.pid if m.alive and m.process else None) for name, m in self.members.items()}

    def rss_mb(self, name: str) -> float:
        member = self.members[name]
        return read_rss_mb(member.process.pid) if member.alive and member.process else 0.0

    def peak_rss_mb(self) -> dict[str, float]:
        """The highest resident set size seen per process since start (across restarts)."""
        with self._lock:
            for member in self.members.values():
                if member.alive:
                    member.peak_rss_mb = max(member.peak_rss_mb, self._peak_of(member))
            return {name: round(m.peak_rss_mb, 1) for name, m in self.members.items()}

    def restarts(self) -> dict[str, int]:
        return {name: m.restarts for name, m in self.members.items()}

    def log_tail(self, name: str, lines: int = 40) -> str:
        if not self.log_dir:
            return ""
        path = self.log_dir / f"{name}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""

    def table(self) -> str:
        rows = [("process", "url", "pid")]
        rows += [(n, self.url(n), str(p or "-")) for n, p in self.pids().items()]
        widths = [max(len(r[i]) for r in rows) for i in range(3)]
        return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows)
