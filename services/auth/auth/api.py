"""Routes of /api/auth: parse, call a use case, shape the answer."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request, Response

from auth import login as login_use_case
from auth import service
from auth.client_address import client_address
from auth.schemas import LoginRequest, LogoutRequest, RefreshRequest, RegisterRequest, TokenPair, UserOut
from auth.service import IssuedTokens, Security
from shopkit.auth import Principal, current_principal
from shopkit.openapi import problems
from shopkit.uow import UnitOfWork
from shopkit.webapp import get_runtime, get_uow

router = APIRouter(prefix="/api/auth", tags=["auth"])


async def get_security(request: Request) -> Security:
    security: Security = request.app.state.security
    return security


async def get_client_address(request: Request) -> str:
    return client_address(request.headers.getlist("x-forwarded-for"), request.client.host if request.client else None)


def _pair(issued: IssuedTokens) -> TokenPair:
    return TokenPair(access_token=issued.access_token, refresh_token=issued.refresh_token, expires_in=issued.expires_in)


# Async, as is login: the hash waits for its slot in the event loop, holding neither a thread nor a
# connection; the database work runs in the threadpool after it.
@router.post("/register", status_code=201, response_model=UserOut, responses=problems(409, 503))
async def register(
    body: RegisterRequest, uow: UnitOfWork = Depends(get_uow), security: Security = Depends(get_security)
) -> UserOut:
    password_hash = await service.hash_new_password(security, body.password)
    user = await service.in_database(
        security, service.register, uow, email=body.email, password_hash=password_hash, full_name=body.full_name
    )
    return UserOut.model_validate(user)


@router.post("/login", response_model=TokenPair, responses=problems(401, 429, 503))
async def login(
    body: LoginRequest,
    uow: UnitOfWork = Depends(get_uow),
    security: Security = Depends(get_security),
    address: str = Depends(get_client_address),
) -> TokenPair:
    issued = await login_use_case.login(uow, security, email=body.email, password=body.password, address=address)
    return _pair(issued)


@router.post("/refresh", response_model=TokenPair, responses=problems(401))
def refresh(
    body: RefreshRequest, uow: UnitOfWork = Depends(get_uow), security: Security = Depends(get_security)
) -> TokenPair:
    return _pair(service.refresh(uow, security, refresh_token=body.refresh_token))


@router.post("/logout", status_code=204, response_class=Response)
def logout(body: LogoutRequest, uow: UnitOfWork = Depends(get_uow)) -> Response:
    service.logout(uow, refresh_token=body.refresh_token)
    return Response(status_code=204)


@router.get("/me", response_model=UserOut)
def me(principal: Principal = Depends(current_principal), uow: UnitOfWork = Depends(get_uow)) -> UserOut:
    return UserOut.model_validate(service.get_user(uow, principal.user_id))


@router.get("/jwks.json")
async def jwks(request: Request) -> dict[str, Any]:
    return {"keys": [get_runtime(request).verifier.keys.jwk()]}
