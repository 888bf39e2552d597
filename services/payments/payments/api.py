"""Routes of the payments service: parse, call the use case, shape the answer."""

from __future__ import annotations

import logging
import uuid
from typing import Literal
from urllib.parse import urlencode

import stripe
from fastapi import APIRouter, Depends, Header, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, RedirectResponse

from payments.domain import public_status
from payments.schemas import CallbackOutcome, PaymentCreate, PaymentOut, PaymentPage, RefundCreate
from payments.service import PaymentService
from shopkit.auth import Principal, current_principal, require_admin
from shopkit.problems import BadRequest

log = logging.getLogger("payments.api")

router = APIRouter(prefix="/api/payments", tags=["payments"])


def get_service(request: Request) -> PaymentService:
    service: PaymentService = request.app.state.payments
    return service


@router.post("", status_code=201, response_model=PaymentOut)
def create_payment(
    body: PaymentCreate,
    response: Response,
    principal: Principal = Depends(current_principal),
    idempotency_key: str | None = Header(default=None, alias="Idempotency-Key", max_length=255),
    service: PaymentService = Depends(get_service),
) -> PaymentOut:
    started = service.start_payment(principal, body.order_id, body.provider, idempotency_key)
    if not started.created:
        response.status_code = 200
    return PaymentOut.of(started.payment)


@router.get("/bkash/callback", response_model=CallbackOutcome)
def bkash_callback(
    request: Request,
    payment_reference: str = Query(alias="paymentID", min_length=1, max_length=255),
    status: Literal["success", "failure", "cancel"] = Query(),
    service: PaymentService = Depends(get_service),
) -> Response:
    service.logger.record(
        direction="inbound",
        provider="bkash",
        operation="callback",
        url=str(request.url),
        request=dict(request.query_params),
        response=None,
        status=None,
    )
    payment = service.bkash_callback(payment_reference, status)
    outcome = {
        "payment_id": str(payment.id),
        "order_id": str(payment.order_id),
        "status": public_status(payment.status),
    }
    frontend = service.settings.frontend_url
    if frontend:
        separator = "&" if "?" in frontend else "?"
        query = urlencode({"payment_id": outcome["payment_id"], "status": outcome["status"]})
        return RedirectResponse(f"{frontend}{separator}{query}", status_code=303)
    return JSONResponse(outcome)


@router.post("/webhooks/stripe")
async def stripe_webhook(request: Request, service: PaymentService = Depends(get_service)) -> JSONResponse:
    raw = await request.body()
    signature = request.headers.get("stripe-signature")
    try:
        event = service.stripe.verify_webhook(raw, signature)
    except (stripe.SignatureVerificationError, ValueError) as exc:
        await run_in_threadpool(_log_webhook, service, request, raw, 400)
        raise BadRequest("the Stripe-Signature does not verify against this body") from exc
    if not isinstance(event, dict) or not event.get("id"):
        raise BadRequest("not a Stripe event")
    await run_in_threadpool(_log_webhook, service, request, raw, 200)
    event_row_id = await run_in_threadpool(service.store_stripe_event, event)
    if event_row_id is not None:
        try:
            await run_in_threadpool(service.process_stripe_event, event_row_id)
        except Exception:
            # Stored is enough to answer 2xx: the sweeper processes it again.
            log.exception("processing a stored Stripe event failed", extra={"event": event.get("id")})
    return JSONResponse({"received": True})


def _log_webhook(service: PaymentService, request: Request, raw: bytes, status: int) -> None:
    service.logger.record(
        direction="inbound",
        provider="stripe",
        operation="webhook",
        url=str(request.url),
        request={"headers": dict(request.headers), "body": raw.decode("utf-8", errors="replace")},
        response=None,
        status=status,
    )


@router.get("", response_model=PaymentPage)
def list_payments(
    order_id: uuid.UUID | None = None,
    page: int = Query(default=1, ge=1),
    page_size: int = Query(default=20, ge=1, le=100),
    principal: Principal = Depends(current_principal),
    service: PaymentService = Depends(get_service),
) -> PaymentPage:
    items, total = service.list_payments(principal, order_id, page, page_size)
    return PaymentPage(items=[PaymentOut.of(p) for p in items], total=total, page=page, page_size=page_size)


@router.get("/{payment_id}", response_model=PaymentOut)
def get_payment(
    payment_id: uuid.UUID,
    principal: Principal = Depends(current_principal),
    service: PaymentService = Depends(get_service),
) -> PaymentOut:
    return PaymentOut.of(service.get_payment(principal, payment_id))


@router.post("/{payment_id}/refund", status_code=202, response_model=PaymentOut)
def refund_payment(
    payment_id: uuid.UUID,
    body: RefundCreate,
    _admin: Principal = Depends(require_admin),
    service: PaymentService = Depends(get_service),
) -> PaymentOut:
    return PaymentOut.of(service.admin_refund(payment_id, body.reason))
