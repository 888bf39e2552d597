"""Test controls (`/_control/...`, not part of Stripe): the provider's bad days and a look inside."""

from __future__ import annotations

import asyncio
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sandbox.stripe_sandbox import checkout, refunds
from sandbox.stripe_sandbox.context import context_of
from sandbox.stripe_sandbox.webhooks import WebhookMode
from sandbox.web import control_body, public_base_url


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


async def list_deliveries(request: Request) -> Response:
    """The webhook endpoint's deliveries: the events it is subscribed to, oldest first."""
    account = context_of(request).account
    event_type = request.query_params.get("type")
    with account.lock:
        records = [
            r.control_json()
            for r in account.events.values()
            if r.delivery is not None and (event_type is None or r.type == event_type)
        ]
    return JSONResponse({"data": records})


async def get_delivery(request: Request) -> Response:
    account = context_of(request).account
    with account.lock:
        record = account.events.get(request.path_params["event_id"])
        return _no_such_event() if record is None else JSONResponse(record.control_json())


async def redeliver(request: Request) -> Response:
    context = context_of(request)
    record = context.account.events.get(request.path_params["event_id"])
    if record is None:
        return _no_such_event()
    if not context.settings.webhook_url:
        return JSONResponse({"detail": "No webhook URL is configured"}, status_code=409)
    if record.delivery is None:
        return JSONResponse({"detail": "The webhook endpoint is not subscribed to this type"}, status_code=409)
    await asyncio.wrap_future(context.dispatcher.redeliver(record))
    with context.account.lock:
        return JSONResponse(record.control_json())


async def webhook_mode(request: Request) -> Response:
    dispatcher = context_of(request).dispatcher
    if request.method == "POST":
        dispatcher.mode = (await control_body(request, WebhookModeRequest)).mode
    return JSONResponse({"mode": dispatcher.mode.value})


async def refund_in_dashboard(request: Request) -> Response:
    body = await control_body(request, DashboardRefund)
    intent_id = request.path_params["intent_id"]
    return JSONResponse(refunds.dashboard_refund(context_of(request).account, intent_id, body.amount))


async def settle_async_payment(request: Request) -> Response:
    body = await control_body(request, AsyncOutcome)
    account, session_id = context_of(request).account, request.path_params["session_id"]
    return JSONResponse(checkout.settle_async_payment(account, session_id, succeeded=body.outcome == "succeeded"))


async def set_api_delay(request: Request) -> Response:
    delay = context_of(request).api_delay
    delay.seconds = (await control_body(request, DelayRequest)).seconds
    return JSONResponse({"seconds": delay.seconds})


async def reset(request: Request) -> Response:
    context = context_of(request)
    context.account.reset()
    context.keys.clear()
    context.api_delay.seconds = 0.0
    context.dispatcher.mode = WebhookMode.DELIVER
    return JSONResponse({"reset": True})


async def index(request: Request) -> Response:
    settings = context_of(request).settings
    return JSONResponse(
        {"sandbox": "stripe", "api_base": public_base_url(request), "webhook_url": settings.webhook_url}
    )


routes = [
    Route("/_control/events", list_deliveries, methods=["GET"]),
    Route("/_control/events/{event_id}", get_delivery, methods=["GET"]),
    Route("/_control/events/{event_id}/redeliver", redeliver, methods=["POST"]),
    Route("/_control/webhooks", webhook_mode, methods=["GET", "POST"]),
    Route("/_control/payment_intents/{intent_id}/refund", refund_in_dashboard, methods=["POST"]),
    Route("/_control/checkout/sessions/{session_id}/async-payment", settle_async_payment, methods=["POST"]),
    Route("/_control/api-delay", set_api_delay, methods=["POST"]),
    Route("/_control/reset", reset, methods=["POST"]),
    Route("/", index, methods=["GET"]),
]
