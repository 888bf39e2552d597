"""`make test`: every test, in several pytest runs at once, then the tests that need the machine to themselves.

    python -m tools.testrun [pytest arguments...]

Most of the suite waits (on PostgreSQL's fsyncs, on processes starting, on sagas settling) rather
than computes (a lone run keeps a fifth of a core busy), so the suite is cut into runs (the end-to-end
tests, each service's, the kit's, the rest) of which SHOP_TEST_RUNS_AT_ONCE (3) go side by side: each
test has its own database, bus namespace, ports and directories, so no run can see another's data. Tests
marked `serial` run afterwards, alone: the ones that restart RabbitMQ (every other test's
connections would drop with it) and the ones that measure what the machine sustains (the overload
test calibrates its rate; a concurrent run would move the ground under it).

Each run's output goes to `var/test-logs/<run>.log` and is printed whole once the run ends, so CI
logs read one run at a time. The exit status is the first failing run's. Extra arguments go to every
run (`python -m tools.testrun -x`, `make test PYTEST_ARGS=-x`).
"""

from __future__ import annotations

import compileall
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

REPO_ROOT = Path(__file__).resolve().parent.parent
LOG_DIR = REPO_ROOT / "var" / "test-logs"
NO_TESTS_COLLECTED = 5


@dataclass(frozen=True)
class Run:
    name: str
    args: tuple[str, ...]


# Longest first, so that the short ones fill in beside the end-to-end tests.
# The end-to-end tests that wait longest (timeouts and reconciliation intervals passing, a race of a
# hundred buyers), apart from the others so that the two halves can go side by side.
E2E_WAITING = (
    "tests/e2e/test_provider_bad_days_e2e.py",
    "tests/e2e/test_oversell_e2e.py",
    "tests/e2e/test_payment_timeout_e2e.py",
    "tests/e2e/test_orders_catalog_down_e2e.py",
)
SIDE_BY_SIDE = (
    Run("e2e-waiting", E2E_WAITING),
    Run("e2e", ("tests/e2e", *(f"--ignore={path}" for path in E2E_WAITING))),
    Run("payments", ("services/payments",)),
    Run("catalog", ("services/catalog",)),
    Run("orders", ("services/orders",)),
    Run("auth-gateway", ("services/auth", "services/gateway")),
    Run("libs", ("libs",)),
    Run("sandbox-tools-ops", ("sandbox", "tests", "--ignore=tests/e2e")),
)
ALONE = Run("serial", ())
AT_ONCE = int(os.environ.get("SHOP_TEST_RUNS_AT_ONCE", "3"))
# The shop's own sources, compiled once before the runs: where PYTHONDONTWRITEBYTECODE is set (as in CI
# here) every process the tests start would otherwise compile them again (the venv is compiled at
# install).
SOURCES = ("allinone", "libs", "sandbox", "services", "tests", "tools")


def compile_sources() -> None:
    for folder in SOURCES:
        compileall.compile_dir(REPO_ROOT / folder, quiet=1, workers=0)


def _start(run: Run, extra: list[str], marker: str) -> tuple[subprocess.Popen[bytes], IO[bytes]]:
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    log = (LOG_DIR / f"{run.name}.log").open("wb")
    command = [sys.executable, "-m", "pytest", *run.args, "-m", marker, *extra]
    print(f"testrun: {run.name}: {' '.join(command[1:])}", flush=True)
    process = subprocess.Popen(command, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT)
    return process, log


def _report(run: Run, code: int, seconds: float) -> int:
    sys.stdout.flush()
    print(f"\n========== testrun: {run.name} (exit {code}, {seconds:.0f} s) ==========", flush=True)
    sys.stdout.buffer.write((LOG_DIR / f"{run.name}.log").read_bytes())
    sys.stdout.flush()
    return 0 if code == NO_TESTS_COLLECTED else code


def run_pool(runs: tuple[Run, ...], extra: list[str], marker: str, at_once: int) -> dict[str, int]:
    """Each run its own pytest process, `at_once` of them at a time; a log is printed as its run ends."""
    waiting = list(runs)
    running: dict[str, tuple[Run, subprocess.Popen[bytes], IO[bytes], float]] = {}
    codes: dict[str, int] = {}
    while waiting or running:
        while waiting and len(running) < at_once:
            run = waiting.pop(0)
            running[run.name] = (run, *_start(run, extra, marker), time.monotonic())
        time.sleep(0.2)
        for name, (run, process, log, started) in list(running.items()):
            code = process.poll()
            if code is None:
                continue
            log.close()
            del running[name]
            codes[name] = _report(run, code, time.monotonic() - started)
    return codes


def main(argv: list[str] | None = None) -> int:
    extra = list(sys.argv[1:] if argv is None else argv)
    started = time.monotonic()
    compile_sources()
    codes = run_pool(SIDE_BY_SIDE, extra, "not serial", max(1, AT_ONCE))
    codes.update(run_pool((ALONE,), extra, "serial", 1))
    failed = [name for name, code in codes.items() if code]
    verdict = f"failed: {', '.join(failed)}" if failed else "all passed"
    print(f"\ntestrun: {verdict} in {time.monotonic() - started:.0f} s", flush=True)
    return next((codes[name] for name in failed), 0)


if __name__ == "__main__":
    sys.exit(main())
