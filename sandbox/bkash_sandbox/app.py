"""The bKash sandbox as an ASGI app: the tokenized checkout API, the hosted pages, the test controls."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.middleware import Middleware

from sandbox.bkash_sandbox import api, controls, hosted
from sandbox.bkash_sandbox.account import API_VERSION, MerchantAccount
from sandbox.bkash_sandbox.context import BkashContext
from sandbox.bkash_sandbox.errors import BkashError, Unauthorized
from sandbox.bkash_sandbox.faults import MaintenanceGate
from sandbox.bkash_sandbox.settings import BkashSandboxSettings
from sandbox.persistence import open_journal
from sandbox.web import InvalidControlBody, invalid_control_body


def create_app(settings: BkashSandboxSettings | None = None) -> Starlette:
    settings = settings or BkashSandboxSettings()
    account = MerchantAccount(settings, open_journal(settings.state_dir, "bkash"))
    account.load()
    context = BkashContext(settings, account)
    app = Starlette(
        routes=[*api.routes(API_VERSION), *hosted.routes, *controls.routes],
        middleware=[Middleware(MaintenanceGate, faults=context.faults)],
        exception_handlers={
            BkashError: api.bkash_error,
            Unauthorized: api.unauthorized,
            InvalidControlBody: invalid_control_body,
        },
    )
    app.state.sandbox = context
    app.state.settings = settings
    app.state.account = account
    return app
