"""JWT verification (every service checks tokens itself, with the auth service's public key) and
the FastAPI dependencies for the caller and their role."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import os
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from fastapi import Depends, Request

from shopkit.problems import Forbidden, Unauthenticated
from shopkit.settings import KitSettings

ADMIN, CUSTOMER = "admin", "customer"
SERVICE_TOKEN_HEADER = "x-shop-service-token"


@dataclass(frozen=True)
class KeyPair:
    private_pem: bytes | None
    public_pem: bytes
    algorithm: str

    @property
    def kid(self) -> str:
        return hashlib.sha256(self.public_pem).hexdigest()[:16]

    def jwk(self) -> dict[str, Any]:
        public = serialization.load_pem_public_key(self.public_pem)
        if isinstance(public, ed25519.Ed25519PublicKey):
            raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
            key = {"kty": "OKP", "crv": "Ed25519", "x": _b64(raw)}
        elif isinstance(public, rsa.RSAPublicKey):
            numbers = public.public_numbers()
            key = {
                "kty": "RSA",
                "n": _b64(numbers.n.to_bytes((numbers.n.bit_length() + 7) // 8, "big")),
                "e": _b64(numbers.e.to_bytes((numbers.e.bit_length() + 7) // 8, "big")),
            }
        else:  # pragma: no cover - settings only allow the two algorithms
            raise ValueError("unsupported public key type")
        return {**key, "kid": self.kid, "alg": self.algorithm, "use": "sig"}


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def load_keys(settings: KitSettings) -> KeyPair:
    """Keys from settings; in development a pair generated once under var/jwt and shared by every
    process of this machine (created atomically, so racing processes agree on one pair)."""
    if settings.jwt_public_key:
        private = settings.jwt_private_key.encode() if settings.jwt_private_key else None
        return KeyPair(private, settings.jwt_public_key.encode(), settings.jwt_algorithm)
    if settings.environment == "production":
        raise RuntimeError("SHOP_JWT_PUBLIC_KEY is required in production")
    folder = settings.var_dir / "jwt"
    folder.mkdir(parents=True, exist_ok=True)
    private_path, public_path = folder / "private.pem", folder / "public.pem"
    if not public_path.exists():
        _generate_once(private_path, public_path)
    return KeyPair(private_path.read_bytes(), public_path.read_bytes(), "EdDSA")


def _generate_once(private_path: Path, public_path: Path) -> None:
    key = ed25519.Ed25519PrivateKey.generate()
    private_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    try:
        fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        _wait_for(public_path)
        return
    with os.fdopen(fd, "wb") as handle:
        handle.write(private_pem)
    tmp = public_path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_bytes(public_pem)
    tmp.replace(public_path)


def _wait_for(path: Path) -> None:
    import time

    for _ in range(100):
        if path.exists():
            return
        time.sleep(0.05)
    raise RuntimeError(f"{path} was not written by the process that claimed it")


@dataclass(frozen=True)
class Principal:
    user_id: uuid.UUID
    role: str
    token_id: str

    @property
    def is_admin(self) -> bool:
        return self.role == ADMIN


class TokenVerifier:
    """Verifies access tokens, and remembers the ones it verified until they expire: a customer's
    token arrives with every request, and a signature check costs more than the rest of a small
    request. The cache is bounded (least recently used out first) and keyed by the whole token, so a
    token differing in any byte is verified afresh."""

    def __init__(self, keys: KeyPair, *, issuer: str, audience: str, cache_size: int = 10_000) -> None:
        self.keys = keys
        self.issuer = issuer
        self.audience = audience
        self._public_key = serialization.load_pem_public_key(keys.public_pem)
        self._cache_size = cache_size
        self._verified: OrderedDict[str, tuple[Principal, float]] = OrderedDict()

    def verify(self, token: str) -> Principal:
        cached = self._verified.get(token)
        if cached is not None:
            principal, expires_at = cached
            if time.time() < expires_at:
                with contextlib.suppress(KeyError):  # evicted by another thread meanwhile
                    self._verified.move_to_end(token)
                return principal
            self._verified.pop(token, None)
        principal, expires_at = self._verify(token)
        if self._cache_size > 0:
            self._verified[token] = (principal, expires_at)
            if len(self._verified) > self._cache_size:
                with contextlib.suppress(KeyError):
                    self._verified.popitem(last=False)
        return principal

    def _verify(self, token: str) -> tuple[Principal, float]:
        try:
            claims = jwt.decode(
                token,
                self._public_key,  # type: ignore[arg-type]
                algorithms=[self.keys.algorithm],  # pinned: "none" and HS256-with-public-key are refused
                issuer=self.issuer,
                audience=self.audience,
                options={"require": ["sub", "role", "exp", "iat", "iss", "aud", "jti"]},
            )
            principal = Principal(uuid.UUID(claims["sub"]), str(claims["role"]), str(claims["jti"]))
            return principal, float(claims["exp"])
        except (jwt.PyJWTError, ValueError, KeyError) as exc:
            raise Unauthenticated("the access token is invalid or expired") from exc


def bearer_token(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("expected 'Authorization: Bearer <token>'")
    return token.strip()


async def current_principal(request: Request) -> Principal:  # async: no thread hop for a CPU-light check
    token = bearer_token(request)
    if token is None:
        raise Unauthenticated()
    verifier: TokenVerifier = request.app.state.token_verifier
    return verifier.verify(token)


def service_token_matches(presented: str | None, expected: str) -> bool:
    return presented is not None and hmac.compare_digest(presented.encode(), expected.encode())


async def require_service(request: Request) -> None:
    """Dependency of every /internal route: only another service of the shop, holding the shared
    internal token, may call it. A request that reached the route some other way still gets 401."""
    settings = request.app.state.settings
    if not service_token_matches(request.headers.get(SERVICE_TOKEN_HEADER), settings.internal_token):
        raise Unauthenticated("this route is for the shop's own services")


async def require_admin(principal: Principal = Depends(current_principal)) -> Principal:
    if not principal.is_admin:
        raise Forbidden("this needs the admin role")
    return principal
