"""The Stripe API (`/v1/...`): routes only; each calls one function of the account's modules."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from starlette.responses import JSONResponse

from sandbox.stripe_sandbox import charges, checkout, event_queries, refunds
from sandbox.stripe_sandbox.context import context_of
from sandbox.stripe_sandbox.errors import StripeError
from sandbox.stripe_sandbox.lists import paging
from sandbox.stripe_sandbox.params import expand
from sandbox.stripe_sandbox.wire import api_get, authenticate, idempotent_post
from sandbox.web import public_base_url

router = APIRouter(prefix="/v1")


@router.post("/checkout/sessions")
async def create_checkout_session(request: Request) -> Response:
    context = context_of(request)
    context.background.loop()  # the sweeper that expires sessions past expires_at runs there
    hosted_base = public_base_url(request)
    return await idempotent_post(
        context, request, lambda params: checkout.create_session(context.account, params, hosted_base)
    )


@router.get("/checkout/sessions/{session_id}")
async def retrieve_checkout_session(session_id: str, request: Request) -> Response:
    account = context_of(request).account
    return await api_get(request, lambda params: checkout.retrieve_session(account, session_id, expand(params)))


@router.get("/checkout/sessions/{session_id}/line_items")
async def checkout_session_line_items(session_id: str, request: Request) -> Response:
    account = context_of(request).account
    return await api_get(request, lambda params: checkout.session_line_items(account, session_id))


@router.post("/checkout/sessions/{session_id}/expire")
async def expire_checkout_session(session_id: str, request: Request) -> Response:
    context = context_of(request)
    return await idempotent_post(context, request, lambda params: checkout.expire_session(context.account, session_id))


@router.post("/refunds")
async def create_refund(request: Request) -> Response:
    context = context_of(request)
    return await idempotent_post(context, request, lambda params: refunds.create_refund(context.account, params))


@router.get("/refunds")
async def list_refunds(request: Request) -> Response:
    account = context_of(request).account
    return await api_get(request, lambda params: refunds.list_refunds(account, params))


@router.get("/refunds/{refund_id}")
async def retrieve_refund(refund_id: str, request: Request) -> Response:
    account = context_of(request).account
    return await api_get(request, lambda params: refunds.retrieve_refund(account, refund_id))


@router.get("/payment_intents/{intent_id}")
async def retrieve_payment_intent(intent_id: str, request: Request) -> Response:
    account = context_of(request).account
    return await api_get(request, lambda params: charges.retrieve_payment_intent(account, intent_id, expand(params)))


@router.get("/charges/{charge_id}")
async def retrieve_charge(charge_id: str, request: Request) -> Response:
    account = context_of(request).account
    return await api_get(request, lambda params: charges.retrieve_charge(account, charge_id, expand(params)))


@router.get("/charges/{charge_id}/refunds")
async def list_charge_refunds(charge_id: str, request: Request) -> Response:
    account = context_of(request).account
    return await api_get(request, lambda params: charges.charge_refunds(account, charge_id, paging(params)))


@router.get("/events")
async def list_events(request: Request) -> Response:
    account = context_of(request).account
    return await api_get(request, lambda params: event_queries.list_events(account, params))


@router.get("/events/{event_id}")
async def retrieve_event(event_id: str, request: Request) -> Response:
    account = context_of(request).account
    return await api_get(request, lambda params: event_queries.retrieve_event(account, event_id))


@router.api_route("/{rest:path}", methods=["GET", "POST", "DELETE", "PUT", "PATCH"], include_in_schema=False)
async def unrecognized(rest: str, request: Request) -> Response:
    authenticate(request)
    raise StripeError(404, f"Unrecognized request URL ({request.method}: /v1/{rest}).")


async def stripe_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StripeError)
    return JSONResponse(exc.body(), status_code=exc.status)
