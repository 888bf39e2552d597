"""The hosted pages at `bkashURL`: wallet number, then OTP, then PIN, each answering 303 to the next."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from sandbox.bkash_sandbox import customer, pages
from sandbox.bkash_sandbox.context import context_of
from sandbox.bkash_sandbox.customer import NotPayable, StepResult
from sandbox.bkash_sandbox.objects import CustomerStep
from sandbox.web import form_fields, public_base_url


def checkout_url(request: Request, payment_id: str) -> str:
    return f"{public_base_url(request)}/checkout/{payment_id}"


def step_url(request: Request, payment_id: str, step: CustomerStep) -> str:
    base = checkout_url(request, payment_id)
    return {CustomerStep.OTP: f"{base}/otp", CustomerStep.PIN: f"{base}/pin"}.get(step, base)


def advance(request: Request, result: StepResult) -> Response:
    if result.callback_status is not None:
        account = context_of(request).account
        return RedirectResponse(customer.callback_url(account, result.payment, result.callback_status), status_code=303)
    if result.next_step is not None:
        return RedirectResponse(step_url(request, result.payment.payment_id, result.next_step), status_code=303)
    base = checkout_url(request, result.payment.payment_id)
    return HTMLResponse(pages.wallet_page(result.payment, base, result.error), status_code=400)


def unavailable(exc: NotPayable) -> HTMLResponse:
    return HTMLResponse(pages.unavailable_page(exc.message), status_code=exc.status_code)


async def wallet_step(request: Request) -> Response:
    payment_id = request.path_params["payment_id"]
    try:
        payment = customer.view(context_of(request).account, payment_id)
    except NotPayable as exc:
        return unavailable(exc)
    return HTMLResponse(pages.wallet_page(payment, checkout_url(request, payment_id)))


async def submit_wallet(request: Request) -> Response:
    payment_id = request.path_params["payment_id"]
    fields = form_fields(await request.body())
    try:
        return advance(
            request, customer.enter_wallet(context_of(request).account, payment_id, fields.get("wallet", ""))
        )
    except NotPayable as exc:
        return unavailable(exc)


async def otp_step(request: Request) -> Response:
    payment_id = request.path_params["payment_id"]
    try:
        payment = customer.view(context_of(request).account, payment_id)
    except NotPayable as exc:
        return unavailable(exc)
    if payment.step is not CustomerStep.OTP:
        return RedirectResponse(step_url(request, payment_id, payment.step), status_code=303)
    return HTMLResponse(pages.otp_page(payment, checkout_url(request, payment_id)))


async def submit_otp(request: Request) -> Response:
    payment_id = request.path_params["payment_id"]
    fields = form_fields(await request.body())
    try:
        return advance(request, customer.enter_otp(context_of(request).account, payment_id, fields.get("otp", "")))
    except NotPayable as exc:
        return unavailable(exc)


async def pin_step(request: Request) -> Response:
    payment_id = request.path_params["payment_id"]
    try:
        payment = customer.view(context_of(request).account, payment_id)
    except NotPayable as exc:
        return unavailable(exc)
    if payment.step is not CustomerStep.PIN:
        return RedirectResponse(step_url(request, payment_id, payment.step), status_code=303)
    return HTMLResponse(pages.pin_page(payment, checkout_url(request, payment_id)))


async def submit_pin(request: Request) -> Response:
    payment_id = request.path_params["payment_id"]
    fields = form_fields(await request.body())
    try:
        return advance(request, customer.enter_pin(context_of(request).account, payment_id, fields.get("pin", "")))
    except NotPayable as exc:
        return unavailable(exc)


async def cancel(request: Request) -> Response:
    payment_id = request.path_params["payment_id"]
    try:
        return advance(request, customer.cancel(context_of(request).account, payment_id))
    except NotPayable as exc:
        return unavailable(exc)


routes = [
    Route("/checkout/{payment_id}", wallet_step, methods=["GET"]),
    Route("/checkout/{payment_id}/wallet", submit_wallet, methods=["POST"]),
    Route("/checkout/{payment_id}/otp", otp_step, methods=["GET"]),
    Route("/checkout/{payment_id}/otp", submit_otp, methods=["POST"]),
    Route("/checkout/{payment_id}/pin", pin_step, methods=["GET"]),
    Route("/checkout/{payment_id}/pin", submit_pin, methods=["POST"]),
    Route("/checkout/{payment_id}/cancel", cancel, methods=["GET", "POST"]),
]
