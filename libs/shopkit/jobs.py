"""Periodic jobs (payment timeouts, saga sweeper): a sync function run in a thread every N seconds.
Jobs are safe with several replicas because each one claims its rows with SKIP LOCKED."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger("shopkit.jobs")


@dataclass(frozen=True)
class PeriodicJob:
    name: str
    interval: float
    run: Callable[[], object]


async def run_periodically(job: PeriodicJob) -> None:
    while True:
        await asyncio.sleep(job.interval)
        try:
            await asyncio.to_thread(job.run)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("periodic job failed", extra={"job": job.name})
