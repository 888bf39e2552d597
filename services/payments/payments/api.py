"""Routes of the payments service: parse, call the use case, shape the answer."""

from __future__ import annotations

import uuid
from typing import Annotated, Literal
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Header, Query, Request, Response
from fastapi.responses import RedirectResponse

from contracts.events import Provider
from payments.context import PaymentsContext
from payments.domain import public_status
from payments.flows import bkash_flow, queries, refunds, starting, stripe_webhooks
from payments.providers.base import WebhookRejected
from payments.schemas import (
    CallbackOutcome,
    PaymentCreate,
    PaymentOut,
    PaymentPage,
    PublicStatus,
    RefundCreate,
    json_response,
    page_response,
    payment_response,
)
from shopkit.auth import Principal, current_principal, require_admin
from shopkit.fields import QUERY_TEXT
from shopkit.openapi import problems
from shopkit.problems import BadRequest
from shopkit.uow import UnitOfWork
from shopkit.webapp import get_uow

router = APIRouter(prefix="/api/payments", tags=["payments"])

ACKNOWLEDGED = b'{"received":true}'


async def get_context(request: Request) -> PaymentsContext:
    context: PaymentsContext = request.app.state.payments
    return context


async def raw_body(request: Request) -> bytes:
    return await request.body()


Context = Annotated[PaymentsContext, Depends(get_context)]
Uow = Annotated[UnitOfWork, Depends(get_uow)]
Customer = Annotated[Principal, Depends(current_principal)]
Admin = Annotated[Principal, Depends(require_admin)]
IdempotencyKey = Annotated[str | None, Header(alias="Idempotency-Key", max_length=255)]


# 503: the provider (or the database) cannot answer now.
@router.post("", status_code=201, response_model=PaymentOut, responses=problems(404, 409, 503))
def create_payment(body: PaymentCreate, principal: Customer, context: Context, key: IdempotencyKey = None) -> Response:
    started = starting.start_payment(context, principal, body.order_id, body.provider, key)
    return payment_response(started.payment, 201 if started.created else 200)


@router.get("/bkash/callback", response_model=CallbackOutcome, responses=problems(404, 503))
def bkash_callback(
    request: Request,
    context: Context,
    reference: Annotated[str, Query(alias="paymentID", min_length=1, max_length=255, pattern=QUERY_TEXT)],
    status: Annotated[Literal["success", "failure", "cancel"], Query()],
) -> Response:
    payment = bkash_flow.on_callback(context, reference, status, str(request.url), request.query_params)
    outcome = CallbackOutcome(payment_id=payment.id, order_id=payment.order_id, status=public_status(payment.status))
    frontend = context.settings.frontend_url
    if frontend:
        separator = "&" if "?" in frontend else "?"
        query = urlencode({"payment_id": str(outcome.payment_id), "status": outcome.status})
        return RedirectResponse(f"{frontend}{separator}{query}", status_code=303)
    return json_response(outcome)


@router.post("/webhooks/stripe", responses=problems(400, 503))
def stripe_webhook(request: Request, context: Context, raw: Annotated[bytes, Depends(raw_body)]) -> Response:
    try:
        stripe_webhooks.receive_stripe_webhook(context, raw, request.headers, str(request.url))
    except WebhookRejected as exc:
        raise BadRequest(str(exc)) from exc
    return Response(ACKNOWLEDGED, media_type="application/json")


@router.get("", response_model=PaymentPage)
def list_payments(
    principal: Customer,
    uow: Uow,
    order_id: uuid.UUID | None = None,
    status: PublicStatus | None = None,
    provider: Provider | None = None,
    page: Annotated[int, Query(ge=1, le=1_000_000)] = 1,
    page_size: Annotated[int, Query(ge=1, le=100)] = 20,
) -> Response:
    """A customer's own payments; for an admin every payment, filtered by order, status or provider."""
    filters = queries.PaymentFilters(page, page_size, order_id, status, provider)
    items, total = queries.list_payments(uow, principal, filters)
    return page_response(items, total, page, page_size)


@router.get("/{payment_id}", response_model=PaymentOut, responses=problems(404))
def get_payment(payment_id: uuid.UUID, principal: Customer, uow: Uow) -> Response:
    return payment_response(queries.get_payment(uow, principal, payment_id))


@router.post("/{payment_id}/refund", status_code=202, response_model=PaymentOut, responses=problems(404, 409))
def refund_payment(
    payment_id: uuid.UUID, body: RefundCreate, _admin: Admin, uow: Uow, context: Context, key: IdempotencyKey = None
) -> Response:
    payment = refunds.refund_payment(
        uow,
        payment_id,
        amount=body.amount,
        reason=body.reason,
        restock=body.restock,
        key=f"admin-{key or uuid.uuid4()}",
        providers=context.providers,
    )
    return payment_response(payment, 202)
