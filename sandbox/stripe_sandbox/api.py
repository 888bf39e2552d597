"""The Stripe API (`/v1/...`): routes only; each calls one function of the account's modules."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sandbox.stripe_sandbox import charges, checkout, event_queries, refunds
from sandbox.stripe_sandbox.context import context_of
from sandbox.stripe_sandbox.errors import StripeError
from sandbox.stripe_sandbox.lists import paging
from sandbox.stripe_sandbox.params import expand
from sandbox.stripe_sandbox.wire import api_get, authenticate, idempotent_post
from sandbox.web import public_base_url


async def create_checkout_session(request: Request) -> Response:
    context = context_of(request)
    context.background.loop()  # the sweeper that expires sessions past expires_at runs there
    hosted_base = public_base_url(request)
    return await idempotent_post(
        context, request, lambda params: checkout.create_session(context.account, params, hosted_base)
    )


async def retrieve_checkout_session(request: Request) -> Response:
    account, session_id = context_of(request).account, request.path_params["session_id"]
    return await api_get(request, lambda params: checkout.retrieve_session(account, session_id, expand(params)))


async def checkout_session_line_items(request: Request) -> Response:
    account, session_id = context_of(request).account, request.path_params["session_id"]
    return await api_get(request, lambda params: checkout.session_line_items(account, session_id))


async def expire_checkout_session(request: Request) -> Response:
    context, session_id = context_of(request), request.path_params["session_id"]
    return await idempotent_post(context, request, lambda params: checkout.expire_session(context.account, session_id))


async def create_refund(request: Request) -> Response:
    context = context_of(request)
    return await idempotent_post(context, request, lambda params: refunds.create_refund(context.account, params))


async def list_refunds(request: Request) -> Response:
    account = context_of(request).account
    return await api_get(request, lambda params: refunds.list_refunds(account, params))


async def retrieve_refund(request: Request) -> Response:
    account, refund_id = context_of(request).account, request.path_params["refund_id"]
    return await api_get(request, lambda params: refunds.retrieve_refund(account, refund_id))


async def retrieve_payment_intent(request: Request) -> Response:
    account, intent_id = context_of(request).account, request.path_params["intent_id"]
    return await api_get(request, lambda params: charges.retrieve_payment_intent(account, intent_id, expand(params)))


async def retrieve_charge(request: Request) -> Response:
    account, charge_id = context_of(request).account, request.path_params["charge_id"]
    return await api_get(request, lambda params: charges.retrieve_charge(account, charge_id, expand(params)))


async def list_charge_refunds(request: Request) -> Response:
    account, charge_id = context_of(request).account, request.path_params["charge_id"]
    return await api_get(request, lambda params: charges.charge_refunds(account, charge_id, paging(params)))


async def list_events(request: Request) -> Response:
    account = context_of(request).account
    return await api_get(request, lambda params: event_queries.list_events(account, params))


async def retrieve_event(request: Request) -> Response:
    account, event_id = context_of(request).account, request.path_params["event_id"]
    return await api_get(request, lambda params: event_queries.retrieve_event(account, event_id))


async def unrecognized(request: Request) -> Response:
    authenticate(request)
    raise StripeError(404, f"Unrecognized request URL ({request.method}: /v1/{request.path_params['rest']}).")


async def stripe_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StripeError)
    return JSONResponse(exc.body(), status_code=exc.status)


GET, POST = ["GET"], ["POST"]
routes = [
    Route("/v1/checkout/sessions", create_checkout_session, methods=POST),
    Route("/v1/checkout/sessions/{session_id}", retrieve_checkout_session, methods=GET),
    Route("/v1/checkout/sessions/{session_id}/line_items", checkout_session_line_items, methods=GET),
    Route("/v1/checkout/sessions/{session_id}/expire", expire_checkout_session, methods=POST),
    Route("/v1/refunds", create_refund, methods=POST),
    Route("/v1/refunds", list_refunds, methods=GET),
    Route("/v1/refunds/{refund_id}", retrieve_refund, methods=GET),
    Route("/v1/payment_intents/{intent_id}", retrieve_payment_intent, methods=GET),
    Route("/v1/charges/{charge_id}", retrieve_charge, methods=GET),
    Route("/v1/charges/{charge_id}/refunds", list_charge_refunds, methods=GET),
    Route("/v1/events", list_events, methods=GET),
    Route("/v1/events/{event_id}", retrieve_event, methods=GET),
    Route("/v1/{rest:path}", unrecognized, methods=["GET", "POST", "DELETE", "PUT", "PATCH"]),
]
