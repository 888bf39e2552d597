"""CPU time spent by each process of the benchmark between start() and stop().

Named processes (the shop's, the sandboxes, RabbitMQ's beam) are read from /proc through psutil at
both ends: user + system time, plus that of their children that exited. PostgreSQL's backend
sessions of the run's database are attributed to the service whose role opened them (the services
connect as `shop_<service>`; a backend's process title names its role and database; the same roles
on other databases belong to other users of the server and are left out). Backends come and go
(pool overflow connections are closed after use), so a sampler thread lists the postmaster's children
every `discover` seconds (a new one's role, database and CPU are read at once) and reads the CPU of
all of them every `interval`; when a backend exits, the kernel adds its whole CPU time to the
postmaster's children times, so what exited sessions spent after their last sample is known exactly
in total (the exited tail), though not per session.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psutil
import psycopg2

# A backend's title: "postgres: [cluster: ]<role> <database> <host(port)|[local]> <activity>"; the
# server's own processes (checkpointer, walwriter, autovacuum ...) have other titles.
BACKEND_TITLE = re.compile(r"^postgres: (?:\S+: )?(\S+) (\S+) (?:\S+\(\d+\)|\[local\])")
# Sessions of other databases on the same server (other users of a shared machine) are counted under
# this name and left out of the totals.
ELSEWHERE = "(other databases)"
SERVER = "(server)"
# A backend just forked still carries the postmaster's command line until it has read its startup
# packet: its role and database are read again until it says.
STARTING = "(starting)"
UNNAMED = (SERVER, ELSEWHERE, STARTING)


def session_kind(title: str, database: str) -> str:
    """The service of a backend of `database` ("orders" for role shop_orders), SERVER for the server's
    own processes and other roles on `database`, ELSEWHERE for sessions of other databases."""
    if not title.startswith("postgres: "):
        return STARTING
    match = BACKEND_TITLE.match(title)
    if match is None:
        return SERVER
    role, db = match.groups()
    if db != database:
        return ELSEWHERE
    return role.removeprefix("shop_") if role.startswith("shop_") else SERVER


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def stat_seconds(pid: int) -> float:
    """User + system CPU of a process straight from /proc/<pid>/stat (a third of psutil's cost, which
    matters when a sampler reads dozens of backends ten times a second)."""
    fields = Path(f"/proc/{pid}/stat").read_bytes().rsplit(b")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def total_seconds(process: psutil.Process, *, children: bool = True) -> float:
    """The process and (unless `children` is False) its reaped children."""
    times = process.cpu_times()
    own = times.user + times.system
    return float(own + times.children_user + times.children_system if children else own)


def find_postmaster(url: str) -> psutil.Process | None:
    """The main process of the PostgreSQL server at `url` when it runs on this machine: the parent of
    the backend serving a connection to it."""
    if urlsplit(url).hostname not in (None, "", "127.0.0.1", "localhost", "::1"):
        return None
    connection = psycopg2.connect(url)
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            (backend,) = cursor.fetchone() or (0,)
        return psutil.Process(psutil.Process(backend).ppid())
    except psutil.Error:
        return None
    finally:
        connection.close()


def find_rabbitmq() -> psutil.Process | None:
    return next((p for p in psutil.process_iter(["name"]) if p.info["name"] == "beam.smp"), None)


def machine_busy_seconds() -> float:
    """CPU time the machine's cores spent running anything (guest time is inside user already; time
    stolen by the hypervisor ran nothing of ours)."""
    times = psutil.cpu_times()
    return float(
        sum(times) - times.idle - sum(getattr(times, f, 0.0) for f in ("iowait", "steal", "guest", "guest_nice"))
    )


@dataclass
class Backend:
    pid: int
    kind: str
    baseline: float
    last: float


class PostgresSessions:
    """The postmaster's children, sampled: CPU per service since `begin()`."""

    def __init__(self, postmaster: psutil.Process, database: str) -> None:
        self.postmaster = postmaster
        self.database = database
        self.children_file = Path(f"/proc/{postmaster.pid}/task/{postmaster.pid}/children")
        self.alive: dict[int, Backend] = {}
        self.exited: list[Backend] = []
        self.began = False
        self.postmaster_own = 0.0
        self.postmaster_children = 0.0

    def begin(self) -> None:
        self.sample(refresh=True)
        self.began = True
        times = self.postmaster.cpu_times()
        self.postmaster_own = times.user + times.system
        self.postmaster_children = times.children_user + times.children_system

    def _child_pids(self) -> set[int]:
        try:
            return {int(pid) for pid in self.children_file.read_text().split()}
        except OSError:
            return {child.pid for child in self.postmaster.children()}

    def _kind(self, pid: int) -> str:
        title = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        return session_kind(title, self.database)

    def _discover(self, pid: int) -> None:
        try:
            kind, seconds = self._kind(pid), stat_seconds(pid)
        except OSError:
            return
        # Born after begin(): all of its CPU falls in the window.
        self.alive[pid] = Backend(pid, kind, 0.0 if self.began else seconds, seconds)

    def _look_again(self, backend: Backend, refresh: bool) -> None:
        try:
            if backend.kind == STARTING:
                backend.kind = self._kind(backend.pid)
            if refresh and backend.kind != ELSEWHERE:
                backend.last = stat_seconds(backend.pid)
        except OSError:
            return

    def sample(self, *, refresh: bool) -> None:
        """Note new and gone children; with `refresh`, read the CPU of every living one."""
        current = self._child_pids()
        for pid in self.alive.keys() - current:
            self.exited.append(self.alive.pop(pid))
        for pid in current:
            backend = self.alive.get(pid)
            if backend is None:
                self._discover(pid)
            else:
                self._look_again(backend, refresh)

    def end(self) -> dict[str, Any]:
        self.sample(refresh=True)
        times = self.postmaster.cpu_times()
        per_kind: dict[str, float] = {SERVER: times.user + times.system - self.postmaster_own}
        for backend in [*self.alive.values(), *self.exited]:
            per_kind[backend.kind] = per_kind.get(backend.kind, 0.0) + backend.last - backend.baseline
        exited = self.exited
        reaped = times.children_user + times.children_system - self.postmaster_children
        # What exited sessions spent after their last sample, and sessions that ended before they
        # said their database, are known in total only: this database's share of them is estimated
        # by its share of the sessions that ended.
        unknown = max(0.0, reaped - sum(b.last for b in exited)) + per_kind.pop(STARTING, 0.0)
        ours = sum(1 for b in exited if b.kind not in UNNAMED)
        theirs = sum(1 for b in exited if b.kind == ELSEWHERE)
        share = ours / (ours + theirs) if ours + theirs else 0.0
        server, elsewhere = per_kind.pop(SERVER), per_kind.pop(ELSEWHERE, 0.0)
        return {
            "sessions": {kind: round(s * 1000, 1) for kind, s in sorted(per_kind.items())},
            "other_ms": round(server * 1000, 1),
            "exited_tail_ms": round(unknown * share * 1000, 1),
            "other_databases_ms": round((elsewhere + unknown * (1 - share)) * 1000, 1),
            "backends_seen": sum(1 for b in [*self.alive.values(), *exited] if b.kind not in UNNAMED),
            "backends_exited": ours,
        }


class CpuAccount:
    def __init__(
        self,
        processes: Mapping[str, psutil.Process],
        postmaster: psutil.Process | None,
        database: str,
        interval: float = 0.2,
        discover: float = 0.05,
        own_only: frozenset[str] = frozenset(),
    ) -> None:
        self.processes = dict(processes)
        # Processes whose reaped children are counted elsewhere (the bench itself: its load generator
        # reports its own CPU and would otherwise be counted twice once it exits).
        self.own_only = own_only
        self.postgres = PostgresSessions(postmaster, database) if postmaster else None
        self.interval = interval
        self.discover = discover
        self.baselines: dict[str, float] = {}
        self._stop = threading.Event()
        self._sampler: threading.Thread | None = None
        self._started = 0.0
        self._machine = 0.0

    def start(self) -> None:
        self.baselines = {name: self._seconds(name, p) for name, p in self.processes.items()}
        self._machine = machine_busy_seconds()
        self._started = time.monotonic()
        if self.postgres is not None:
            self.postgres.begin()
            self._sampler = threading.Thread(target=self._sample, name="cpu-sampler", daemon=True)
            self._sampler.start()

    def _seconds(self, name: str, process: psutil.Process) -> float:
        return total_seconds(process, children=name not in self.own_only)

    def _sample(self) -> None:
        assert self.postgres is not None
        # Listing the children is one read: often, so that short sessions are seen; reading every
        # child's CPU costs more: every `interval`.
        refreshed = time.monotonic()
        while not self._stop.wait(self.discover):
            refresh = time.monotonic() - refreshed >= self.interval
            self.postgres.sample(refresh=refresh)
            if refresh:
                refreshed = time.monotonic()

    def stop(self) -> dict[str, Any]:
        """Milliseconds of CPU per process in the window, PostgreSQL's apart (see the module doc)."""
        self._stop.set()
        if self._sampler is not None:
            self._sampler.join()
        spent: dict[str, float] = {}
        for name, process in self.processes.items():
            try:
                spent[name] = round((self._seconds(name, process) - self.baselines[name]) * 1000, 1)
            except psutil.Error:
                spent[name] = float("nan")  # it died in the window: its figure is unknown
        return {
            "window_s": round(time.monotonic() - self._started, 2),
            "processes_ms": spent,
            "postgres": self.postgres.end() if self.postgres else None,
            "machine_busy_ms": round((machine_busy_seconds() - self._machine) * 1000, 1),
        }


def busy_cores(processes: list[psutil.Process], window: float) -> float:
    """How many cores the processes used over the next `window` seconds."""
    before = []
    for process in processes:
        try:
            before.append(total_seconds(process))
        except psutil.Error:
            before.append(0.0)
    time.sleep(window)
    after = 0.0
    for process, seconds in zip(processes, before, strict=True):
        try:
            after += total_seconds(process) - seconds
        except psutil.Error:
            continue
    return after / window


def wait_quiet(processes: list[psutil.Process], *, below: float = 0.15, within: float = 60.0) -> float:
    """Wait until the processes are nearly idle (under `below` cores over a second) so that the next
    measurement does not pay for the previous one's backlog; the seconds waited."""
    started = time.monotonic()
    while time.monotonic() - started < within and busy_cores(processes, 1.0) >= below:
        pass
    return round(time.monotonic() - started, 1)
