"""Access tokens (JWT signed with the service's private key, verified everywhere with the public one)
and opaque refresh tokens, of which only a hash is stored."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from datetime import datetime, timedelta
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization

from shopkit.auth import KeyPair


class TokenIssuer:
    def __init__(self, keys: KeyPair, *, issuer: str, audience: str, ttl: timedelta) -> None:
        if keys.private_pem is None:
            raise RuntimeError("the auth service needs SHOP_JWT_PRIVATE_KEY to sign access tokens")
        self._private_key: Any = serialization.load_pem_private_key(keys.private_pem, password=None)
        self.keys = keys
        self.issuer = issuer
        self.audience = audience
        self.ttl = ttl

    def access_token(self, user_id: uuid.UUID, role: str, *, now: datetime) -> str:
        claims = {
            "sub": str(user_id),
            "role": role,
            "iat": int(now.timestamp()),
            "exp": int((now + self.ttl).timestamp()),
            "iss": self.issuer,
            "aud": self.audience,
            "jti": str(uuid.uuid4()),
        }
        return jwt.encode(claims, self._private_key, algorithm=self.keys.algorithm, headers={"kid": self.keys.kid})


def new_refresh_token() -> str:
    return secrets.token_urlsafe(32)


def refresh_token_hash(token: str) -> str:
    """A plain SHA-256 is enough: the token is 256 random bits, not a guessable password."""
    return hashlib.sha256(token.encode()).hexdigest()
