"""The hosted Checkout page at a session's `url`, and what its forms post to."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import Route

from sandbox.stripe_sandbox import checkout, pages
from sandbox.stripe_sandbox.context import context_of
from sandbox.stripe_sandbox.errors import StripeError
from sandbox.web import form_fields

# `delayed` stands for a payment method that settles later (a bank debit): not in the shop's
# contract, but how checkout.session.async_payment_succeeded / _failed come about.
OUTCOMES = ("success", "decline", "delayed")


async def checkout_page(request: Request) -> HTMLResponse:
    try:
        session = checkout.peek_session(context_of(request).account, request.path_params["session_id"])
    except StripeError:
        return HTMLResponse(pages.unavailable_page("No such checkout session."), status_code=404)
    if session.status == "complete":
        return HTMLResponse(pages.paid_page(session))
    if session.status != "open":
        return HTMLResponse(pages.unavailable_page("This checkout session has expired."), status_code=410)
    return HTMLResponse(pages.checkout_page(session))


async def pay(request: Request) -> HTMLResponse:
    fields = form_fields(await request.body())
    outcome = fields.get("outcome", "success")
    if outcome not in OUTCOMES:
        return HTMLResponse(pages.unavailable_page("outcome must be success or decline."), status_code=400)
    account, session_id = context_of(request).account, request.path_params["session_id"]
    try:
        if outcome == "decline":
            return HTMLResponse(pages.declined_page(checkout.declinable_session(account, session_id)), status_code=402)
        session = checkout.pay_session(account, session_id, fields.get("email") or None, delayed=outcome == "delayed")
    except StripeError as exc:
        return HTMLResponse(pages.unavailable_page(exc.message), status_code=exc.status)
    return HTMLResponse(pages.paid_page(session))


async def cancel(request: Request) -> HTMLResponse:
    try:
        session = checkout.cancel_session(context_of(request).account, request.path_params["session_id"])
    except StripeError as exc:
        return HTMLResponse(pages.unavailable_page(exc.message), status_code=exc.status)
    return HTMLResponse(pages.cancelled_page(session))


routes = [
    Route("/checkout/{session_id}", checkout_page, methods=["GET"]),
    Route("/checkout/{session_id}/pay", pay, methods=["POST"]),
    Route("/checkout/{session_id}/cancel", cancel, methods=["GET", "POST"]),
]
