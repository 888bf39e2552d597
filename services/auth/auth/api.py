"""Routes of /api/auth: parse, call a use case, shape the answer."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request, Response

from auth import service
from auth.schemas import LoginRequest, LogoutRequest, RefreshRequest, RegisterRequest, TokenPair, UserOut
from auth.service import IssuedTokens, Security
from shopkit.auth import Principal, current_principal
from shopkit.uow import UnitOfWork
from shopkit.webapp import get_runtime, get_uow

router = APIRouter(prefix="/api/auth", tags=["auth"])

PROBLEM: dict[str, Any] = {"content": {"application/problem+json": {}}}


def get_security(request: Request) -> Security:
    security: Security = request.app.state.security
    return security


def _pair(issued: IssuedTokens) -> TokenPair:
    return TokenPair(access_token=issued.access_token, refresh_token=issued.refresh_token, expires_in=issued.expires_in)


@router.post("/register", status_code=201, response_model=UserOut, responses={409: PROBLEM, 422: PROBLEM})
def register(
    body: RegisterRequest, uow: UnitOfWork = Depends(get_uow), security: Security = Depends(get_security)
) -> UserOut:
    user = service.register(uow, security.passwords, email=body.email, password=body.password, full_name=body.full_name)
    return UserOut.model_validate(user)


@router.post("/login", response_model=TokenPair, responses={401: PROBLEM, 429: PROBLEM})
def login(
    body: LoginRequest, uow: UnitOfWork = Depends(get_uow), security: Security = Depends(get_security)
) -> TokenPair:
    return _pair(service.login(uow, security, email=body.email, password=body.password))


@router.post("/refresh", response_model=TokenPair, responses={401: PROBLEM})
def refresh(
    body: RefreshRequest, uow: UnitOfWork = Depends(get_uow), security: Security = Depends(get_security)
) -> TokenPair:
    return _pair(service.refresh(uow, security, refresh_token=body.refresh_token))


@router.post("/logout", status_code=204, response_class=Response)
def logout(body: LogoutRequest, uow: UnitOfWork = Depends(get_uow)) -> Response:
    service.logout(uow, refresh_token=body.refresh_token)
    return Response(status_code=204)


@router.get("/me", response_model=UserOut, responses={401: PROBLEM})
def me(principal: Principal = Depends(current_principal), uow: UnitOfWork = Depends(get_uow)) -> UserOut:
    return UserOut.model_validate(service.get_user(uow, principal.user_id))


@router.get("/jwks.json")
async def jwks(request: Request) -> dict[str, Any]:
    return {"keys": [get_runtime(request).verifier.keys.jwk()]}
