"""Test controls (`/_control/...`, not part of bKash): its bad days and a look inside."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from sandbox.bkash_sandbox import tokens
from sandbox.bkash_sandbox.account import API_VERSION
from sandbox.bkash_sandbox.context import context_of
from sandbox.bkash_sandbox.objects import CustomerStep, TransactionStatus
from sandbox.web import public_base_url

router = APIRouter(include_in_schema=False)


class DelayRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    seconds: float = Field(ge=0, le=600)


class MaintenanceRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    # 0 ends a maintenance window at once.
    seconds: float = Field(ge=0, le=24 * 3600)


class ExecuteTimeoutRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    times: int = Field(ge=0, le=1000)
    # How long the connection is held at most; default SHOP_SANDBOX_BKASH_EXECUTE_TIMEOUT_HOLD.
    hold_seconds: float | None = Field(default=None, gt=0, le=600)


def _no_such_payment() -> Response:
    return JSONResponse({"detail": "No such payment"}, status_code=404)


@router.post("/_control/execute-delay")
async def set_execute_delay(body: DelayRequest, request: Request) -> dict[str, float]:
    faults = context_of(request).faults
    faults.execute_delay = body.seconds
    return {"seconds": faults.execute_delay}


@router.post("/_control/execute-timeout")
async def set_execute_timeout(body: ExecuteTimeoutRequest, request: Request) -> dict[str, Any]:
    context = context_of(request)
    hold = body.hold_seconds if body.hold_seconds is not None else context.settings.execute_timeout_hold
    context.faults.arm_execute_timeouts(body.times, hold)
    return {"times": body.times, "hold_seconds": hold}


@router.post("/_control/maintenance")
async def set_maintenance(body: MaintenanceRequest, request: Request) -> dict[str, float]:
    context_of(request).faults.start_maintenance(body.seconds)
    return {"seconds": body.seconds}


@router.get("/_control/faults")
async def faults_state(request: Request) -> dict[str, Any]:
    return context_of(request).faults.to_json()


@router.post("/_control/reset")
async def reset(request: Request) -> dict[str, bool]:
    context = context_of(request)
    context.account.reset()
    context.faults.clear()
    return {"reset": True}


@router.get("/_control/payments")
async def list_payments(request: Request) -> Response:
    account = context_of(request).account
    with account.lock:
        return JSONResponse({"data": [payment.control_json() for payment in account.payments.values()]})


@router.get("/_control/payments/{payment_id}")
async def payment_state(payment_id: str, request: Request) -> Response:
    account = context_of(request).account
    with account.lock:
        payment = account.payments.get(payment_id)
        return _no_such_payment() if payment is None else JSONResponse(payment.control_json())


@router.post("/_control/payments/{payment_id}/expire")
async def expire_payment(payment_id: str, request: Request) -> Response:
    account = context_of(request).account
    with account.changing() as change:
        payment = account.payments.get(payment_id)
        if payment is None:
            return _no_such_payment()
        if payment.status is TransactionStatus.INITIATED:
            payment.status = TransactionStatus.EXPIRED
            payment.step = CustomerStep.ENDED
            change.touch_payment(payment)
        return JSONResponse(payment.control_json())


@router.post("/_control/expire-tokens")
async def expire_tokens(request: Request) -> dict[str, int]:
    return {"expired": tokens.expire_tokens(context_of(request).account)}


@router.get("/_control/stats")
async def stats(request: Request) -> dict[str, int]:
    return context_of(request).account.stats_json()


@router.get("/")
async def index(request: Request) -> dict[str, str]:
    return {"sandbox": "bkash", "base_url": public_base_url(request), "api_version": API_VERSION}
