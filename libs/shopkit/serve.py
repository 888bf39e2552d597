"""Start one service under uvicorn: `python -m <service> [--host H] [--port P]`."""
from __future__ import annotations

import argparse
from collections.abc import Callable

import uvicorn
from fastapi import FastAPI


def serve(factory: Callable[[], FastAPI], *, name: str, default_port: int) -> None:
    parser = argparse.ArgumentParser(prog=f"python -m {name}")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=default_port)
    args = parser.parse_args()
    uvicorn.run(
        factory(),
        host=args.host,
        port=args.port,
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=5,
    )
