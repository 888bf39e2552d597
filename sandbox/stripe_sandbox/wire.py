"""Stripe's wire conventions: API-key auth, form-encoded parameters, idempotent POSTs, request ids."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sandbox.stripe_sandbox.context import StripeContext
from sandbox.stripe_sandbox.errors import StripeError
from sandbox.stripe_sandbox.forms import FormDecodeError, decode_form
from sandbox.stripe_sandbox.idempotency import SavedResponse, key_scope
from sandbox.stripe_sandbox.objects import new_id

Operation = Callable[[dict[str, Any]], dict[str, Any]]


def authenticate(request: Request) -> str:
    """The secret key from `Authorization: Bearer sk_test_…` or HTTP basic with the key as user."""
    scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
    key = _key_from(scheme.lower(), credentials.strip())
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


def _key_from(scheme: str, credentials: str) -> str:
    if scheme == "bearer":
        return credentials
    if scheme == "basic":
        try:
            return base64.b64decode(credentials, validate=True).decode().partition(":")[0]
        except (binascii.Error, UnicodeDecodeError):
            return ""
    return ""


async def read_form(request: Request) -> dict[str, Any]:
    raw = await request.body() if request.method == "POST" else request.url.query.encode()
    try:
        return decode_form(raw)
    except FormDecodeError as exc:
        raise StripeError(400, str(exc), code="parameter_invalid_empty", param=exc.param) from exc


async def api_get(request: Request, operation: Operation) -> Response:
    authenticate(request)
    return JSONResponse(operation(await read_form(request)))


async def idempotent_post(context: StripeContext, request: Request, operation: Operation) -> Response:
    """Run a POST under Stripe's Idempotency-Key rules (see idempotency.py)."""
    api_key = authenticate(request)
    params = await read_form(request)
    idempotency_key = request.headers.get("idempotency-key")
    if not idempotency_key:
        await context.api_delay.wait()
        return JSONResponse(operation(params))
    keys = context.keys
    scope = key_scope(api_key, idempotency_key)
    saved = keys.begin(scope, request.url.path, json.dumps(params, sort_keys=True))
    headers = {"Idempotency-Key": idempotency_key}
    if saved is not None:
        return JSONResponse(saved.body, saved.status, headers={**headers, "Idempotent-Replayed": "true"})
    try:
        await context.api_delay.wait()
        # The objects the operation makes and the answer kept for replays are stored together.
        with context.account.changing() as change:
            try:
                status, body = 200, operation(params)
            except StripeError as exc:
                if not exc.saved:
                    raise
                status, body = exc.status, exc.body()
            keys.finish(scope, SavedResponse(status, body), change)
    except BaseException:
        keys.release(scope)
        raise
    return JSONResponse(body, status, headers=headers)


class RequestIdMiddleware:
    """Stripe's `Request-Id` header on every answer (a plain ASGI middleware: no per-request task)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                if not any(name.lower() == b"request-id" for name, _ in headers):
                    headers.append((b"request-id", new_id("req_", 14).encode()))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_id)
