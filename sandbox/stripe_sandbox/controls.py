"""Test controls (`/_control/...`, not part of Stripe): the provider's bad days and a look inside."""

from __future__ import annotations

import asyncio
from typing import Any, Literal

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from sandbox.stripe_sandbox import checkout, refunds
from sandbox.stripe_sandbox.context import context_of
from sandbox.stripe_sandbox.webhooks import WebhookMode
from sandbox.web import public_base_url

router = APIRouter(include_in_schema=False)


class DelayRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    seconds: float = Field(ge=0, le=600)


class WebhookModeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    mode: WebhookMode


class DashboardRefund(BaseModel):
    model_config = ConfigDict(extra="forbid")
    # Minor units; without it the rest of the payment is refunded.
    amount: int | None = Field(default=None, gt=0)


class AsyncOutcome(BaseModel):
    model_config = ConfigDict(extra="forbid")
    outcome: Literal["succeeded", "failed"]


def _no_such_event() -> Response:
    return JSONResponse({"detail": "No such event"}, status_code=404)


@router.get("/_control/events")
async def list_deliveries(request: Request, type: str | None = None) -> Response:
    """The webhook endpoint's deliveries: the events it is subscribed to, oldest first."""
    account = context_of(request).account
    with account.lock:
        records = [
            r.control_json()
            for r in account.events.values()
            if r.delivery is not None and (type is None or r.type == type)
        ]
    return JSONResponse({"data": records})


@router.get("/_control/events/{event_id}")
async def get_delivery(event_id: str, request: Request) -> Response:
    account = context_of(request).account
    with account.lock:
        record = account.events.get(event_id)
        return _no_such_event() if record is None else JSONResponse(record.control_json())


@router.post("/_control/events/{event_id}/redeliver")
async def redeliver(event_id: str, request: Request) -> Response:
    context = context_of(request)
    record = context.account.events.get(event_id)
    if record is None:
        return _no_such_event()
    if not context.settings.webhook_url:
        return JSONResponse({"detail": "No webhook URL is configured"}, status_code=409)
    if record.delivery is None:
        return JSONResponse({"detail": "The webhook endpoint is not subscribed to this type"}, status_code=409)
    await asyncio.wrap_future(context.dispatcher.redeliver(record))
    with context.account.lock:
        return JSONResponse(record.control_json())


@router.get("/_control/webhooks")
async def webhook_mode(request: Request) -> dict[str, str]:
    return {"mode": context_of(request).dispatcher.mode.value}


@router.post("/_control/webhooks")
async def set_webhook_mode(body: WebhookModeRequest, request: Request) -> dict[str, str]:
    dispatcher = context_of(request).dispatcher
    dispatcher.mode = body.mode
    return {"mode": dispatcher.mode.value}


@router.post("/_control/payment_intents/{intent_id}/refund")
async def refund_in_dashboard(intent_id: str, body: DashboardRefund, request: Request) -> Response:
    return JSONResponse(refunds.dashboard_refund(context_of(request).account, intent_id, body.amount))


@router.post("/_control/checkout/sessions/{session_id}/async-payment")
async def settle_async_payment(session_id: str, body: AsyncOutcome, request: Request) -> Response:
    account = context_of(request).account
    return JSONResponse(checkout.settle_async_payment(account, session_id, succeeded=body.outcome == "succeeded"))


@router.post("/_control/api-delay")
async def set_api_delay(body: DelayRequest, request: Request) -> dict[str, float]:
    delay = context_of(request).api_delay
    delay.seconds = body.seconds
    return {"seconds": delay.seconds}


@router.post("/_control/reset")
async def reset(request: Request) -> dict[str, bool]:
    context = context_of(request)
    context.account.reset()
    context.keys.clear()
    context.api_delay.seconds = 0.0
    context.dispatcher.mode = WebhookMode.DELIVER
    return {"reset": True}


@router.get("/")
async def index(request: Request) -> dict[str, Any]:
    settings = context_of(request).settings
    return {"sandbox": "stripe", "api_base": public_base_url(request), "webhook_url": settings.webhook_url}
