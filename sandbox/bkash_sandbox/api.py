"""bKash's tokenized checkout API: routes only, served at the root and under /v1.2.0-beta."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from sandbox.bkash_sandbox import payments, refunds, tokens
from sandbox.bkash_sandbox.context import context_of
from sandbox.bkash_sandbox.errors import BkashError, Unauthorized
from sandbox.bkash_sandbox.faults import NoAnswer
from sandbox.bkash_sandbox.objects import Token
from sandbox.web import public_base_url


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


def token_of(request: Request) -> Token:
    account = context_of(request).account
    return tokens.authorize(account, request.headers.get("authorization"), request.headers.get("x-app-key"))


async def grant_token(request: Request) -> Response:
    account = context_of(request).account
    body = await json_body(request)
    return JSONResponse(tokens.grant(account, request.headers.get("username"), request.headers.get("password"), body))


async def refresh_token(request: Request) -> Response:
    account = context_of(request).account
    body = await json_body(request)
    return JSONResponse(tokens.refresh(account, request.headers.get("username"), request.headers.get("password"), body))


async def create_payment(request: Request) -> Response:
    token = token_of(request)
    body = await json_body(request)
    return JSONResponse(payments.create_payment(context_of(request).account, token, body, public_base_url(request)))


async def execute_payment(request: Request) -> Response:
    token_of(request)
    context = context_of(request)
    body = await json_body(request)
    try:
        answer = payments.execute(context.account, body)
    except BkashError as exc:
        answer = exc.body()
    hold = context.faults.take_execute_timeout()
    if hold is not None:
        return NoAnswer(hold)
    if context.faults.execute_delay > 0:
        await asyncio.sleep(context.faults.execute_delay)
    return JSONResponse(answer)


async def query_payment(request: Request) -> Response:
    token_of(request)
    return JSONResponse(payments.query(context_of(request).account, await json_body(request)))


async def search_transaction(request: Request) -> Response:
    token_of(request)
    return JSONResponse(payments.search(context_of(request).account, await json_body(request)))


async def refund_payment(request: Request) -> Response:
    token_of(request)
    return JSONResponse(refunds.refund(context_of(request).account, await json_body(request)))


async def bkash_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, BkashError)
    return JSONResponse(exc.body())


async def unauthorized(request: Request, exc: Exception) -> Response:
    return JSONResponse(Unauthorized.body, status_code=401)


_ENDPOINTS = {
    "/token/grant": grant_token,
    "/token/refresh": refresh_token,
    "/create": create_payment,
    "/execute": execute_payment,
    "/payment/status": query_payment,
    "/general/searchTransaction": search_transaction,
    "/payment/refund": refund_payment,
}


def routes(version: str) -> list[BaseRoute]:
    """Each call at the root and under /v<version>, so either form of BKASH_BASE_URL works.

    Not a Mount: that would put the version into the root path the hosted pages' URLs are built on.
    """
    return [
        Route(f"{prefix}/tokenized/checkout{path}", endpoint, methods=["POST"])
        for prefix in ("", f"/v{version}")
        for path, endpoint in _ENDPOINTS.items()
    ]
