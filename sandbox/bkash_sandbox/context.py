"""What the bKash sandbox's routes share: the merchant account and the fault controls."""

from __future__ import annotations

from dataclasses import dataclass, field

from starlette.requests import Request

from sandbox.bkash_sandbox.account import MerchantAccount
from sandbox.bkash_sandbox.faults import Faults
from sandbox.bkash_sandbox.settings import BkashSandboxSettings


@dataclass
class BkashContext:
    settings: BkashSandboxSettings
    account: MerchantAccount
    faults: Faults = field(default_factory=Faults)


def context_of(request: Request) -> BkashContext:
    # `request.app` is the sandbox's own app, also when it is mounted inside another one.
    context: BkashContext = request.app.state.sandbox
    return context
