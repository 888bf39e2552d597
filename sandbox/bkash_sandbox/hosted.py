"""The hosted pages at `bkashURL`: wallet number, then OTP, then PIN, each answering 303 to the next."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse

from sandbox.bkash_sandbox import customer, pages
from sandbox.bkash_sandbox.context import context_of
from sandbox.bkash_sandbox.customer import NotPayable, StepResult
from sandbox.bkash_sandbox.objects import CustomerStep
from sandbox.web import form_fields, public_base_url

router = APIRouter(prefix="/checkout", include_in_schema=False)


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


@router.get("/{payment_id}", response_class=HTMLResponse)
async def wallet_step(payment_id: str, request: Request) -> Response:
    try:
        payment = customer.view(context_of(request).account, payment_id)
    except NotPayable as exc:
        return unavailable(exc)
    return HTMLResponse(pages.wallet_page(payment, checkout_url(request, payment_id)))


@router.post("/{payment_id}/wallet")
async def submit_wallet(payment_id: str, request: Request) -> Response:
    fields = form_fields(await request.body())
    try:
        return advance(
            request, customer.enter_wallet(context_of(request).account, payment_id, fields.get("wallet", ""))
        )
    except NotPayable as exc:
        return unavailable(exc)


@router.get("/{payment_id}/otp", response_class=HTMLResponse)
async def otp_step(payment_id: str, request: Request) -> Response:
    try:
        payment = customer.view(context_of(request).account, payment_id)
    except NotPayable as exc:
        return unavailable(exc)
    if payment.step is not CustomerStep.OTP:
        return RedirectResponse(step_url(request, payment_id, payment.step), status_code=303)
    return HTMLResponse(pages.otp_page(payment, checkout_url(request, payment_id)))


@router.post("/{payment_id}/otp")
async def submit_otp(payment_id: str, request: Request) -> Response:
    fields = form_fields(await request.body())
    try:
        return advance(request, customer.enter_otp(context_of(request).account, payment_id, fields.get("otp", "")))
    except NotPayable as exc:
        return unavailable(exc)


@router.get("/{payment_id}/pin", response_class=HTMLResponse)
async def pin_step(payment_id: str, request: Request) -> Response:
    try:
        payment = customer.view(context_of(request).account, payment_id)
    except NotPayable as exc:
        return unavailable(exc)
    if payment.step is not CustomerStep.PIN:
        return RedirectResponse(step_url(request, payment_id, payment.step), status_code=303)
    return HTMLResponse(pages.pin_page(payment, checkout_url(request, payment_id)))


@router.post("/{payment_id}/pin")
async def submit_pin(payment_id: str, request: Request) -> Response:
    fields = form_fields(await request.body())
    try:
        return advance(request, customer.enter_pin(context_of(request).account, payment_id, fields.get("pin", "")))
    except NotPayable as exc:
        return unavailable(exc)


@router.api_route("/{payment_id}/cancel", methods=["GET", "POST"])
async def cancel(payment_id: str, request: Request) -> Response:
    try:
        return advance(request, customer.cancel(context_of(request).account, payment_id))
    except NotPayable as exc:
        return unavailable(exc)
