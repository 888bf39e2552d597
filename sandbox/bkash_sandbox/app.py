"""The bKash sandbox as an ASGI app: the tokenized checkout API, the hosted pages, the test controls."""

from __future__ import annotations

from fastapi import FastAPI

from sandbox.bkash_sandbox import api, controls, hosted
from sandbox.bkash_sandbox.account import API_VERSION, MerchantAccount
from sandbox.bkash_sandbox.context import BkashContext
from sandbox.bkash_sandbox.errors import BkashError, Unauthorized
from sandbox.bkash_sandbox.faults import MaintenanceGate
from sandbox.bkash_sandbox.settings import BkashSandboxSettings
from sandbox.persistence import open_journal


def create_app(settings: BkashSandboxSettings | None = None) -> FastAPI:
    settings = settings or BkashSandboxSettings()
    account = MerchantAccount(settings, open_journal(settings.state_dir, "bkash"))
    account.load()
    context = BkashContext(settings, account)

    app = FastAPI(title="bKash sandbox", description="A local fake of the bKash tokenized checkout API.")
    app.state.sandbox = context
    app.state.settings = settings
    app.state.account = account
    app.add_exception_handler(BkashError, api.bkash_error)
    app.add_exception_handler(Unauthorized, api.unauthorized)
    app.add_middleware(MaintenanceGate, faults=context.faults)
    # Served at the root and under /v1.2.0-beta, so either form of BKASH_BASE_URL works.
    app.include_router(api.router)
    app.include_router(api.router, prefix=f"/v{API_VERSION}")
    app.include_router(hosted.router)
    app.include_router(controls.router)
    return app
