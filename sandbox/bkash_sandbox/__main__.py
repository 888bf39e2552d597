"""`python -m sandbox.bkash_sandbox [--host 127.0.0.1] [--port 8011]`."""

from sandbox.bkash_sandbox.app import create_app
from sandbox.web import run_cli

if __name__ == "__main__":
    run_cli("bKash sandbox", create_app, default_port=8011)
