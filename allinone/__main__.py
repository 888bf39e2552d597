"""`python -m allinone [--host H] [--port P]`: the whole shop in one process (what `make run` starts)."""

from __future__ import annotations

import argparse
import os

import uvicorn

from allinone.app import create_app
from shopkit.serve import KEEP_ALIVE_SECONDS, CoalescingHttpToolsProtocol
from shopkit.settings import KitSettings


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m allinone")
    parser.add_argument("--host", default=os.environ.get("SHOP_HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("SHOP_PORT", "8000")))
    args = parser.parse_args()
    app = create_app(args.port)
    base = os.environ["SHOP_PUBLIC_URL"]
    print(
        f"\n  Shop (all-in-one) on {base}\n"
        f"  API docs      {base}/docs\n"
        f"  Admin login   {os.environ.get('SHOP_ADMIN_EMAIL')} / {os.environ.get('SHOP_ADMIN_PASSWORD')}\n"
        f"  Sandboxes     {base}/sandbox/stripe  {base}/sandbox/bkash\n"
        f"  Data          {KitSettings().var_dir}/*.db (SQLite)\n",
        flush=True,
    )
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        log_level="warning",
        access_log=False,
        http=CoalescingHttpToolsProtocol,
        # The gateway in this process decides the client address itself (SHOP_TRUSTED_PROXIES);
        # uvicorn would take it from X-Forwarded-For whenever the peer is 127.0.0.1.
        proxy_headers=False,
        timeout_keep_alive=KEEP_ALIVE_SECONDS,
        timeout_graceful_shutdown=5,
    )


if __name__ == "__main__":
    main()
