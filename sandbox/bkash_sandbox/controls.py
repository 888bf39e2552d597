"""Test controls (`/_control/...`, not part of bKash): its bad days and a look inside."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sandbox.bkash_sandbox import tokens
from sandbox.bkash_sandbox.account import API_VERSION
from sandbox.bkash_sandbox.context import context_of
from sandbox.bkash_sandbox.objects import CustomerStep, TransactionStatus
from sandbox.web import control_body, public_base_url


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


async def set_execute_delay(request: Request) -> Response:
    faults = context_of(request).faults
    faults.execute_delay = (await control_body(request, DelayRequest)).seconds
    return JSONResponse({"seconds": faults.execute_delay})


async def set_execute_timeout(request: Request) -> Response:
    body = await control_body(request, ExecuteTimeoutRequest)
    context = context_of(request)
    hold = body.hold_seconds if body.hold_seconds is not None else context.settings.execute_timeout_hold
    context.faults.arm_execute_timeouts(body.times, hold)
    return JSONResponse({"times": body.times, "hold_seconds": hold})


async def set_maintenance(request: Request) -> Response:
    body = await control_body(request, MaintenanceRequest)
    context_of(request).faults.start_maintenance(body.seconds)
    return JSONResponse({"seconds": body.seconds})


async def faults_state(request: Request) -> Response:
    return JSONResponse(context_of(request).faults.to_json())


async def reset(request: Request) -> Response:
    context = context_of(request)
    context.account.reset()
    context.faults.clear()
    return JSONResponse({"reset": True})


async def list_payments(request: Request) -> Response:
    account = context_of(request).account
    with account.lock:
        return JSONResponse({"data": [payment.control_json() for payment in account.payments.values()]})


async def payment_state(request: Request) -> Response:
    account = context_of(request).account
    with account.lock:
        payment = account.payments.get(request.path_params["payment_id"])
        return _no_such_payment() if payment is None else JSONResponse(payment.control_json())


async def expire_payment(request: Request) -> Response:
    account = context_of(request).account
    with account.changing() as change:
        payment = account.payments.get(request.path_params["payment_id"])
        if payment is None:
            return _no_such_payment()
        if payment.status is TransactionStatus.INITIATED:
            payment.status = TransactionStatus.EXPIRED
            payment.step = CustomerStep.ENDED
            change.touch_payment(payment)
        return JSONResponse(payment.control_json())


async def expire_tokens(request: Request) -> Response:
    return JSONResponse({"expired": tokens.expire_tokens(context_of(request).account)})


async def stats(request: Request) -> Response:
    return JSONResponse(context_of(request).account.stats_json())


async def index(request: Request) -> Response:
    return JSONResponse({"sandbox": "bkash", "base_url": public_base_url(request), "api_version": API_VERSION})


routes = [
    Route("/_control/execute-delay", set_execute_delay, methods=["POST"]),
    Route("/_control/execute-timeout", set_execute_timeout, methods=["POST"]),
    Route("/_control/maintenance", set_maintenance, methods=["POST"]),
    Route("/_control/faults", faults_state, methods=["GET"]),
    Route("/_control/reset", reset, methods=["POST"]),
    Route("/_control/payments", list_payments, methods=["GET"]),
    Route("/_control/payments/{payment_id}", payment_state, methods=["GET"]),
    Route("/_control/payments/{payment_id}/expire", expire_payment, methods=["POST"]),
    Route("/_control/expire-tokens", expire_tokens, methods=["POST"]),
    Route("/_control/stats", stats, methods=["GET"]),
    Route("/", index, methods=["GET"]),
]
