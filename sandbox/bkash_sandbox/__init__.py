"""A local fake of the bKash tokenized checkout API (v1.2.0-beta, URL-based, mode 0011)."""

from sandbox.bkash_sandbox.app import create_app
from sandbox.bkash_sandbox.settings import BkashSandboxSettings

__all__ = ["BkashSandboxSettings", "create_app"]
