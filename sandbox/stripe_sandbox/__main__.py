"""`python -m sandbox.stripe_sandbox [--host 127.0.0.1] [--port 8010]`."""

from sandbox.stripe_sandbox.app import create_app
from sandbox.web import run_cli

if __name__ == "__main__":
    run_cli("Stripe sandbox", create_app, default_port=8010)
