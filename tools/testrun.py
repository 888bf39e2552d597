"""`make test`: every test, in two pytest runs at once, then the tests that need the machine to themselves.

    python -m tools.testrun [pytest arguments...]

Most of the suite waits (on PostgreSQL's fsyncs, on processes starting, on sagas settling) rather
than computes, so the end-to-end tests and the rest run side by side: each test has its own
database, bus namespace, ports and directories, so neither run can see the other's data. Tests
marked `serial` run afterwards, alone: the ones that restart RabbitMQ (every other test's
connections would drop with it) and the ones that measure what the machine sustains (the overload
test calibrates its rate; a concurrent run would move the ground under it).

Each run's output goes to `var/test-logs/<run>.log` and is printed whole once the run ends, so CI
logs read one run at a time. The exit status is the first failing run's. Extra arguments go to every
run (`python -m tools.testrun -x`, `make test PYTEST_ARGS=-x`).
"""

from __future__ import annotations

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


SIDE_BY_SIDE = (
    Run("e2e", ("tests/e2e", "-m", "not serial")),
    Run("rest", ("libs", "services", "sandbox", "tests", "--ignore=tests/e2e", "-m", "not serial")),
)
ALONE = Run("serial", ("-m", "serial"))


def _start(run: Run, extra: list[str]) -> tuple[subprocess.Popen[bytes], IO[bytes]]:
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    log = (LOG_DIR / f"{run.name}.log").open("wb")
    command = [sys.executable, "-m", "pytest", *run.args, *extra]
    print(f"testrun: {run.name}: {' '.join(command[1:])}", flush=True)
    process = subprocess.Popen(command, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT)
    return process, log


def _report(run: Run, code: int, seconds: float) -> int:
    sys.stdout.flush()
    print(f"\n========== testrun: {run.name} (exit {code}, {seconds:.0f} s) ==========", flush=True)
    sys.stdout.buffer.write((LOG_DIR / f"{run.name}.log").read_bytes())
    sys.stdout.flush()
    return 0 if code == NO_TESTS_COLLECTED else code


def run_side_by_side(runs: tuple[Run, ...], extra: list[str]) -> list[int]:
    started = time.monotonic()
    running = [(run, *_start(run, extra)) for run in runs]
    codes = []
    for run, process, log in running:
        code = process.wait()
        log.close()
        codes.append(_report(run, code, time.monotonic() - started))
    return codes


def main(argv: list[str] | None = None) -> int:
    extra = list(sys.argv[1:] if argv is None else argv)
    started = time.monotonic()
    codes = run_side_by_side(SIDE_BY_SIDE, extra)
    codes += run_side_by_side((ALONE,), extra)
    failed = [run.name for run, code in zip((*SIDE_BY_SIDE, ALONE), codes, strict=True) if code]
    verdict = f"failed: {', '.join(failed)}" if failed else "all passed"
    print(f"\ntestrun: {verdict} in {time.monotonic() - started:.0f} s", flush=True)
    return next((code for code in codes if code), 0)


if __name__ == "__main__":
    sys.exit(main())
