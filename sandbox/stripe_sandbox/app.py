"""The fake Stripe API (`/v1/...`), its hosted Checkout page and its test controls (`/_control/...`)."""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel, Field

from sandbox.stripe_sandbox import pages
from sandbox.stripe_sandbox.errors import StripeError
from sandbox.stripe_sandbox.forms import FormDecodeError, decode_form
from sandbox.stripe_sandbox.idempotency import IdempotencyKeys, SavedResponse
from sandbox.stripe_sandbox.objects import new_id
from sandbox.stripe_sandbox.params import expand
from sandbox.stripe_sandbox.settings import StripeSandboxSettings
from sandbox.stripe_sandbox.state import StripeAccount
from sandbox.stripe_sandbox.webhooks import WebhookDispatcher
from sandbox.web import form_fields, public_base_url

Operation = Callable[[dict[str, Any]], dict[str, Any]]


class DelayRequest(BaseModel):
    seconds: float = Field(ge=0, le=600)


class ApiDelay:
    """A pause inside every POST /v1 call, after its idempotency key is claimed.

    It lets tests hold a request "in progress" (to see the 409 for a concurrent same-key request)
    and lets client code exercise its timeouts.
    """

    def __init__(self) -> None:
        self.seconds = 0.0

    async def wait(self) -> None:
        if self.seconds > 0:
            await asyncio.sleep(self.seconds)


def authenticate(request: Request) -> str:
    """The secret key from `Authorization: Bearer sk_test_…` or HTTP basic with the key as user."""
    header = request.headers.get("authorization", "")
    scheme, _, credentials = header.partition(" ")
    key = ""
    if scheme.lower() == "bearer":
        key = credentials.strip()
    elif scheme.lower() == "basic":
        try:
            key = base64.b64decode(credentials.strip(), validate=True).decode().partition(":")[0]
        except (binascii.Error, UnicodeDecodeError):
            key = ""
    if not key:
        raise StripeError(
            401,
            "You did not provide an API key. You need to provide your API key in the Authorization header, "
            "using Bearer auth (e.g. 'Authorization: Bearer YOUR_SECRET_KEY').",
        )
    if not key.startswith("sk_test_") or len(key) == len("sk_test_"):
        masked = key[:8] + "*" * max(len(key) - 12, 0) + key[-4:] if len(key) > 12 else "*" * len(key)
        raise StripeError(401, f"Invalid API Key provided: {masked}", code="api_key_invalid")
    return key


async def read_form(request: Request) -> dict[str, Any]:
    raw = await request.body() if request.method == "POST" else request.url.query.encode()
    try:
        return decode_form(raw)
    except FormDecodeError as exc:
        raise StripeError(400, str(exc), code="parameter_invalid_empty", param=exc.param) from exc


def create_app(settings: StripeSandboxSettings | None = None) -> FastAPI:
    settings = settings or StripeSandboxSettings()
    account = StripeAccount(settings.api_version)
    dispatcher = WebhookDispatcher(settings, account)
    account.publish = dispatcher.publish
    keys = IdempotencyKeys()
    api_delay = ApiDelay()

    app = FastAPI(title="Stripe sandbox", description="A local fake of the Stripe API for the shop.")
    app.state.settings = settings
    app.state.account = account
    app.state.dispatcher = dispatcher

    @app.exception_handler(StripeError)
    async def stripe_error(request: Request, exc: StripeError) -> Response:
        return JSONResponse(exc.body(), status_code=exc.status)

    @app.middleware("http")
    async def request_id(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        response = await call_next(request)
        response.headers.setdefault("Request-Id", new_id("req_", 14))
        return response

    async def idempotent_post(request: Request, operation: Operation) -> Response:
        api_key = authenticate(request)
        params = await read_form(request)
        idempotency_key = request.headers.get("idempotency-key")
        if not idempotency_key:
            await api_delay.wait()
            return JSONResponse(operation(params))
        scope = (api_key, idempotency_key)
        saved = keys.begin(scope, request.url.path, json.dumps(params, sort_keys=True))
        headers = {"Idempotency-Key": idempotency_key}
        if saved is not None:
            return JSONResponse(saved.body, saved.status, headers={**headers, "Idempotent-Replayed": "true"})
        try:
            await api_delay.wait()
            status, body = 200, operation(params)
        except StripeError as exc:
            if not exc.saved:
                keys.release(scope)
                raise
            status, body = exc.status, exc.body()
        except BaseException:
            keys.release(scope)
            raise
        keys.finish(scope, SavedResponse(status, body))
        return JSONResponse(body, status, headers=headers)

    # The API

    @app.post("/v1/checkout/sessions")
    async def create_checkout_session(request: Request) -> Response:
        dispatcher.start()  # also starts the sweeper that expires sessions past expires_at
        hosted_base = public_base_url(request)
        return await idempotent_post(request, lambda params: account.create_session(params, hosted_base))

    @app.get("/v1/checkout/sessions/{session_id}")
    async def retrieve_checkout_session(session_id: str, request: Request) -> Response:
        authenticate(request)
        return JSONResponse(account.get_session(session_id, expand(await read_form(request))))

    @app.get("/v1/checkout/sessions/{session_id}/line_items")
    async def checkout_session_line_items(session_id: str, request: Request) -> Response:
        authenticate(request)
        return JSONResponse(account.session_line_items(session_id))

    @app.post("/v1/checkout/sessions/{session_id}/expire")
    async def expire_checkout_session(session_id: str, request: Request) -> Response:
        return await idempotent_post(request, lambda params: account.expire_session(session_id))

    @app.post("/v1/refunds")
    async def create_refund(request: Request) -> Response:
        return await idempotent_post(request, account.create_refund)

    @app.get("/v1/refunds")
    async def list_refunds(request: Request) -> Response:
        authenticate(request)
        return JSONResponse(account.list_refunds(await read_form(request)))

    @app.get("/v1/refunds/{refund_id}")
    async def retrieve_refund(refund_id: str, request: Request) -> Response:
        authenticate(request)
        return JSONResponse(account.get_refund(refund_id))

    @app.get("/v1/payment_intents/{intent_id}")
    async def retrieve_payment_intent(intent_id: str, request: Request) -> Response:
        authenticate(request)
        return JSONResponse(account.get_payment_intent(intent_id))

    @app.get("/v1/charges/{charge_id}")
    async def retrieve_charge(charge_id: str, request: Request) -> Response:
        authenticate(request)
        return JSONResponse(account.get_charge(charge_id))

    @app.get("/v1/events/{event_id}")
    async def retrieve_event(event_id: str, request: Request) -> Response:
        authenticate(request)
        return JSONResponse(account.get_event(event_id))

    @app.api_route("/v1/{rest:path}", methods=["GET", "POST", "DELETE", "PUT", "PATCH"], include_in_schema=False)
    async def unrecognized(rest: str, request: Request) -> Response:
        authenticate(request)
        raise StripeError(404, f"Unrecognized request URL ({request.method}: /v1/{rest}).")

    # The hosted Checkout page

    @app.get("/checkout/{session_id}", response_class=HTMLResponse)
    async def checkout_page(session_id: str) -> HTMLResponse:
        try:
            session = account.peek_session(session_id)
        except StripeError:
            return HTMLResponse(pages.unavailable_page("No such checkout session."), status_code=404)
        if session.status == "complete":
            return HTMLResponse(pages.paid_page(session))
        if session.status != "open":
            return HTMLResponse(pages.unavailable_page("This checkout session has expired."), status_code=410)
        return HTMLResponse(pages.checkout_page(session))

    @app.post("/checkout/{session_id}/pay", response_class=HTMLResponse)
    async def pay(session_id: str, request: Request) -> HTMLResponse:
        fields = form_fields(await request.body())
        outcome = fields.get("outcome", "success")
        if outcome not in ("success", "decline"):
            return HTMLResponse(pages.unavailable_page("outcome must be success or decline."), status_code=400)
        try:
            if outcome == "decline":
                # A declined card changes nothing: the session stays open and no event is sent.
                session = account.peek_session(session_id)
                if session.status != "open":
                    raise StripeError(409, f"This Checkout Session is no longer open (status {session.status}).")
                return HTMLResponse(pages.declined_page(session), status_code=402)
            session = account.pay_session(session_id, fields.get("email") or None)
        except StripeError as exc:
            return HTMLResponse(pages.unavailable_page(exc.message), status_code=exc.status)
        return HTMLResponse(pages.paid_page(session))

    @app.api_route("/checkout/{session_id}/cancel", methods=["GET", "POST"], response_class=HTMLResponse)
    async def cancel(session_id: str) -> HTMLResponse:
        try:
            session = account.cancel_session(session_id)
        except StripeError as exc:
            return HTMLResponse(pages.unavailable_page(exc.message), status_code=exc.status)
        return HTMLResponse(pages.cancelled_page(session))

    # Test controls (not part of Stripe)

    @app.get("/_control/events")
    async def list_events(type: str | None = None) -> dict[str, Any]:
        return {"data": account.events_json(type)}

    @app.get("/_control/events/{event_id}")
    async def get_event_record(event_id: str) -> Response:
        record = account.event_json(event_id)
        if record is None:
            return JSONResponse({"detail": "No such event"}, status_code=404)
        return JSONResponse(record)

    @app.post("/_control/events/{event_id}/redeliver")
    async def redeliver(event_id: str) -> Response:
        record = account.event_record(event_id)
        if record is None:
            return JSONResponse({"detail": "No such event"}, status_code=404)
        if not settings.webhook_url:
            return JSONResponse({"detail": "No webhook URL is configured"}, status_code=409)
        await asyncio.wrap_future(dispatcher.redeliver(record))
        return JSONResponse(account.event_json(event_id))

    @app.post("/_control/api-delay")
    async def set_api_delay(body: DelayRequest) -> dict[str, float]:
        api_delay.seconds = body.seconds
        return {"seconds": api_delay.seconds}

    @app.post("/_control/reset")
    async def reset() -> dict[str, bool]:
        account.reset()
        keys.clear()
        api_delay.seconds = 0.0
        return {"reset": True}

    @app.get("/", include_in_schema=False)
    async def index(request: Request) -> dict[str, str]:
        return {
            "sandbox": "stripe",
            "api_base": public_base_url(request),
            "webhook_url": settings.webhook_url,
        }

    return app
