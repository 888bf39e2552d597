"""Start one service under uvicorn: `python -m <service> [--host H] [--port P]`."""

from __future__ import annotations

import argparse
import gc
from collections.abc import Callable

import uvicorn
from fastapi import FastAPI


def serve(factory: Callable[[], FastAPI], *, name: str, default_port: int) -> None:
    parser = argparse.ArgumentParser(prog=f"python -m {name}")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=default_port)
    args = parser.parse_args()
    app = factory()
    # Everything imported and built so far lives as long as the process: move it out of the collector's
    # sight, or every full collection under load walks the whole import graph again (tens of ms each).
    gc.collect()
    gc.freeze()
    # And collect the young generation less often: requests allocate many short-lived objects.
    gc.set_threshold(10_000, 20, 20)
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=5,
    )
