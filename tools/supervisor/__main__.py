"""`python -m tools.supervisor`: see tools/supervisor/__init__.py."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path

from tools.supervisor import __doc__ as DOC
from tools.supervisor.cluster import Cluster
from tools.supervisor.plan import PROCESSES, parse_env, parse_replicas


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.supervisor", description=(DOC or "").split("\n\n")[0])
    parser.add_argument("--replicas", default="", help="extra replicas, e.g. catalog=2,orders=2,gateway=2")
    parser.add_argument("--env", action="append", default=[], metavar="KEY=VALUE", help="set for every process")
    parser.add_argument("--only", default="", help=f"comma-separated subset of: {', '.join(PROCESSES)}")
    parser.add_argument("--log-dir", type=Path, default=None, help="write <dir>/<name>.log per process")
    parser.add_argument("--base-port", type=int, default=8000)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--ready-timeout", type=float, default=90.0)
    parser.add_argument("--no-restart", action="store_true", help="leave a dead process dead")
    args = parser.parse_args(argv)
    try:
        extra_env = parse_env(args.env)
        cluster = Cluster(
            database_url=extra_env.get("SHOP_DATABASE_URL"),
            amqp_url=extra_env.get("SHOP_AMQP_URL"),
            base_port=args.base_port,
            host=args.host,
            replicas=parse_replicas(args.replicas),
            env=extra_env,
            only=[n.strip() for n in args.only.split(",") if n.strip()] or None,
            log_dir=args.log_dir,
            restart_on_death=not args.no_restart,
        )
    except ValueError as exc:
        parser.error(str(exc))
    if not cluster.database_url or not cluster.amqp_url:
        print(
            "note: SHOP_DATABASE_URL / SHOP_AMQP_URL not set: services fall back to SQLite and the "
            "in-process bus, which do not work across processes",
            file=sys.stderr,
        )

    stop_requested = threading.Event()

    def request_stop(signum: int, _frame: object) -> None:
        stop_requested.set()

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    cluster.start()
    try:
        try:
            cluster.wait_ready(args.ready_timeout, cancel=stop_requested)
        except TimeoutError as exc:
            print(f"warning: {exc}", file=sys.stderr, flush=True)
        if stop_requested.is_set():
            return 0
        print(cluster.table(), flush=True)
        entry = cluster.url("gateway") if "gateway" in cluster.members else "-"
        print(f"shop is up at {entry}; Ctrl-C stops", flush=True)
        while not stop_requested.wait(0.5):
            pass
    finally:
        print("stopping...", file=sys.stderr, flush=True)
        cluster.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
