"""The fake bKash tokenized checkout API, its hosted pages and its test controls (`/_control/...`)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse
from pydantic import BaseModel, Field

from sandbox.bkash_sandbox import pages
from sandbox.bkash_sandbox.errors import BkashError, Unauthorized
from sandbox.bkash_sandbox.objects import CustomerStep, Token
from sandbox.bkash_sandbox.settings import BkashSandboxSettings
from sandbox.bkash_sandbox.state import API_VERSION, MerchantAccount, NotPayable, StepResult
from sandbox.web import form_fields, public_base_url


class DelayRequest(BaseModel):
    seconds: float = Field(ge=0, le=600)


class ExecuteDelay:
    """How long Execute waits *after* doing its work before answering.

    The payment is completed either way; a client whose timeout is shorter never sees the answer
    and has to find out with Query, which is the recovery path the shop must get right.
    """

    def __init__(self) -> None:
        self.seconds = 0.0

    async def wait(self) -> None:
        if self.seconds > 0:
            await asyncio.sleep(self.seconds)


async def json_body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except ValueError:
        raise BkashError("2025") from None
    if not isinstance(body, dict):
        raise BkashError("2025")
    return body


def checkout_url(request: Request, payment_id: str) -> str:
    return f"{public_base_url(request)}/checkout/{payment_id}"


def step_url(request: Request, payment_id: str, step: CustomerStep) -> str:
    base = checkout_url(request, payment_id)
    return {CustomerStep.OTP: f"{base}/otp", CustomerStep.PIN: f"{base}/pin"}.get(step, base)


def create_app(settings: BkashSandboxSettings | None = None) -> FastAPI:
    settings = settings or BkashSandboxSettings()
    account = MerchantAccount(settings)
    execute_delay = ExecuteDelay()

    app = FastAPI(title="bKash sandbox", description="A local fake of the bKash tokenized checkout API.")
    app.state.settings = settings
    app.state.account = account

    @app.exception_handler(BkashError)
    async def bkash_error(request: Request, exc: BkashError) -> Response:
        return JSONResponse(exc.body())

    @app.exception_handler(Unauthorized)
    async def unauthorized(request: Request, exc: Unauthorized) -> Response:
        return JSONResponse(Unauthorized.body, status_code=401)

    def token_of(request: Request) -> Token:
        return account.authorize(request.headers.get("authorization"), request.headers.get("x-app-key"))

    # The API, served at the root and under /v1.2.0-beta (so either form of BKASH_BASE_URL works)

    api = APIRouter()

    @api.post("/tokenized/checkout/token/grant")
    async def grant_token(request: Request) -> dict[str, Any]:
        body = await json_body(request)
        return account.grant(request.headers.get("username"), request.headers.get("password"), body)

    @api.post("/tokenized/checkout/token/refresh")
    async def refresh_token(request: Request) -> dict[str, Any]:
        body = await json_body(request)
        return account.refresh(request.headers.get("username"), request.headers.get("password"), body)

    @api.post("/tokenized/checkout/create")
    async def create_payment(request: Request) -> dict[str, Any]:
        token = token_of(request)
        return account.create_payment(token, await json_body(request), public_base_url(request))

    @api.post("/tokenized/checkout/execute")
    async def execute_payment(request: Request) -> dict[str, Any]:
        token_of(request)
        body = await json_body(request)
        try:
            answer = account.execute(body)
        except BkashError as exc:
            answer = exc.body()
        await execute_delay.wait()
        return answer

    @api.post("/tokenized/checkout/payment/status")
    async def query_payment(request: Request) -> dict[str, Any]:
        token_of(request)
        return account.query(await json_body(request))

    @api.post("/tokenized/checkout/general/searchTransaction")
    async def search_transaction(request: Request) -> dict[str, Any]:
        token_of(request)
        return account.search(await json_body(request))

    @api.post("/tokenized/checkout/payment/refund")
    async def refund_payment(request: Request) -> dict[str, Any]:
        token_of(request)
        return account.refund(await json_body(request))

    app.include_router(api)
    app.include_router(api, prefix=f"/v{API_VERSION}")

    # The hosted pages (bkashURL and its steps)

    def advance(request: Request, result: StepResult) -> Response:
        if result.callback_status is not None:
            return RedirectResponse(account.callback_url(result.payment, result.callback_status), status_code=303)
        if result.next_step is not None:
            return RedirectResponse(step_url(request, result.payment.payment_id, result.next_step), status_code=303)
        base = checkout_url(request, result.payment.payment_id)
        return HTMLResponse(pages.wallet_page(result.payment, base, result.error), status_code=400)

    def unavailable(exc: NotPayable) -> HTMLResponse:
        return HTMLResponse(pages.unavailable_page(exc.message), status_code=exc.status_code)

    @app.get("/checkout/{payment_id}", response_class=HTMLResponse)
    async def wallet_step(payment_id: str, request: Request) -> Response:
        try:
            payment = account.view(payment_id)
        except NotPayable as exc:
            return unavailable(exc)
        return HTMLResponse(pages.wallet_page(payment, checkout_url(request, payment_id)))

    @app.post("/checkout/{payment_id}/wallet")
    async def submit_wallet(payment_id: str, request: Request) -> Response:
        fields = form_fields(await request.body())
        try:
            return advance(request, account.enter_wallet(payment_id, fields.get("wallet", "")))
        except NotPayable as exc:
            return unavailable(exc)

    @app.get("/checkout/{payment_id}/otp", response_class=HTMLResponse)
    async def otp_step(payment_id: str, request: Request) -> Response:
        try:
            payment = account.view(payment_id)
        except NotPayable as exc:
            return unavailable(exc)
        if payment.step is not CustomerStep.OTP:
            return RedirectResponse(step_url(request, payment_id, payment.step), status_code=303)
        return HTMLResponse(pages.otp_page(payment, checkout_url(request, payment_id)))

    @app.post("/checkout/{payment_id}/otp")
    async def submit_otp(payment_id: str, request: Request) -> Response:
        fields = form_fields(await request.body())
        try:
            return advance(request, account.enter_otp(payment_id, fields.get("otp", "")))
        except NotPayable as exc:
            return unavailable(exc)

    @app.get("/checkout/{payment_id}/pin", response_class=HTMLResponse)
    async def pin_step(payment_id: str, request: Request) -> Response:
        try:
            payment = account.view(payment_id)
        except NotPayable as exc:
            return unavailable(exc)
        if payment.step is not CustomerStep.PIN:
            return RedirectResponse(step_url(request, payment_id, payment.step), status_code=303)
        return HTMLResponse(pages.pin_page(payment, checkout_url(request, payment_id)))

    @app.post("/checkout/{payment_id}/pin")
    async def submit_pin(payment_id: str, request: Request) -> Response:
        fields = form_fields(await request.body())
        try:
            return advance(request, account.enter_pin(payment_id, fields.get("pin", "")))
        except NotPayable as exc:
            return unavailable(exc)

    @app.api_route("/checkout/{payment_id}/cancel", methods=["GET", "POST"])
    async def cancel(payment_id: str, request: Request) -> Response:
        try:
            return advance(request, account.cancel(payment_id))
        except NotPayable as exc:
            return unavailable(exc)

    # Test controls (not part of bKash)

    @app.post("/_control/execute-delay")
    async def set_execute_delay(body: DelayRequest) -> dict[str, float]:
        execute_delay.seconds = body.seconds
        return {"seconds": execute_delay.seconds}

    @app.post("/_control/reset")
    async def reset() -> dict[str, bool]:
        account.reset()
        execute_delay.seconds = 0.0
        return {"reset": True}

    @app.get("/_control/payments")
    async def list_payments() -> dict[str, Any]:
        return {"data": account.payments_state()}

    @app.get("/_control/payments/{payment_id}")
    async def payment_state(payment_id: str) -> Response:
        state = account.payment_state(payment_id)
        if state is None:
            return JSONResponse({"detail": "No such payment"}, status_code=404)
        return JSONResponse(state)

    @app.post("/_control/payments/{payment_id}/expire")
    async def expire_payment(payment_id: str) -> Response:
        state = account.expire_payment(payment_id)
        if state is None:
            return JSONResponse({"detail": "No such payment"}, status_code=404)
        return JSONResponse(state)

    @app.post("/_control/expire-tokens")
    async def expire_tokens() -> dict[str, int]:
        return {"expired": account.expire_tokens()}

    @app.get("/_control/stats")
    async def stats() -> dict[str, int]:
        return account.stats()

    @app.get("/", include_in_schema=False)
    async def index(request: Request) -> dict[str, str]:
        return {"sandbox": "bkash", "base_url": public_base_url(request), "api_version": API_VERSION}

    return app
