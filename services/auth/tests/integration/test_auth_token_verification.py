"""Access tokens as every service checks them (the kit's TokenVerifier, reached through /api/auth/me):
anything but a genuine, current token of this issuer for this audience is a 401 problem."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from shopkit.auth import load_keys

pytestmark = pytest.mark.integration


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unsigned(header: dict[str, Any], claims: dict[str, Any]) -> str:
    return f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"


@pytest.fixture(scope="module")
def api(shared_sqlite_api: Any) -> Any:
    return shared_sqlite_api


@pytest.fixture(scope="module")
def customer(api: Any) -> dict[str, Any]:
    user = api.register("verify@example.com")
    return {"user": user, "claims": api.claims(sub=user["id"])}


def _assert_rejected(api: Any, token: str) -> None:
    response = api.me(token)
    assert response.status_code == 401, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["status"] == 401


def test_a_genuine_token_is_accepted(api: Any, customer: dict[str, Any]) -> None:
    # The control for every rejection below: the same claims, properly signed, pass.
    response = api.me(api.sign(customer["claims"]))
    assert response.status_code == 200
    assert response.json()["id"] == customer["user"]["id"]


def test_issued_tokens_carry_the_contract_claims_and_kid(api: Any, customer: dict[str, Any]) -> None:
    token = api.login("verify@example.com")["access_token"]
    header = jwt.get_unverified_header(token)
    keys = api.runtime.verifier.keys
    assert header["alg"] == "EdDSA" and header["kid"] == keys.kid
    claims = jwt.decode(token, options={"verify_signature": False})
    assert set(claims) == {"sub", "role", "exp", "iat", "iss", "aud", "jti"}
    assert claims["sub"] == customer["user"]["id"] and claims["role"] == "customer"
    assert claims["iss"] == "shop-auth" and claims["aud"] == "shop"
    assert claims["exp"] - claims["iat"] == 900


def test_tampered_signature_is_rejected(api: Any, customer: dict[str, Any]) -> None:
    head, body, signature = api.sign(customer["claims"]).split(".")
    flipped = signature[:10] + ("A" if signature[10] != "A" else "B") + signature[11:]
    _assert_rejected(api, f"{head}.{body}.{flipped}")


def test_tampered_claims_are_rejected(api: Any, customer: dict[str, Any]) -> None:
    head, _, signature = api.sign(customer["claims"]).split(".")
    promoted = _b64(json.dumps({**customer["claims"], "role": "admin"}).encode())
    _assert_rejected(api, f"{head}.{promoted}.{signature}")


def test_alg_none_is_rejected(api: Any, customer: dict[str, Any]) -> None:
    _assert_rejected(api, _unsigned({"alg": "none", "typ": "JWT"}, customer["claims"]) + ".")


def test_hs256_signed_with_the_public_key_is_rejected(api: Any, customer: dict[str, Any]) -> None:
    public_pem = load_keys(api.settings).public_pem
    signing_input = _unsigned({"alg": "HS256", "typ": "JWT"}, customer["claims"])
    signature = hmac.new(public_pem, signing_input.encode(), hashlib.sha256).digest()
    _assert_rejected(api, f"{signing_input}.{_b64(signature)}")


def test_wrong_issuer_is_rejected(api: Any, customer: dict[str, Any]) -> None:
    _assert_rejected(api, api.sign({**customer["claims"], "iss": "someone-else"}))


def test_wrong_audience_is_rejected(api: Any, customer: dict[str, Any]) -> None:
    _assert_rejected(api, api.sign({**customer["claims"], "aud": "another-shop"}))


def test_expired_token_is_rejected(api: Any, customer: dict[str, Any]) -> None:
    past = datetime.now(UTC) - timedelta(minutes=20)
    expired_at = past + timedelta(minutes=15)
    claims = {**customer["claims"], "iat": int(past.timestamp()), "exp": int(expired_at.timestamp())}
    _assert_rejected(api, api.sign(claims))


def test_token_missing_a_claim_is_rejected(api: Any, customer: dict[str, Any]) -> None:
    claims = {k: v for k, v in customer["claims"].items() if k != "jti"}
    _assert_rejected(api, api.sign(claims))


def test_token_signed_by_another_key_is_rejected(api: Any, customer: dict[str, Any]) -> None:
    stranger = ed25519.Ed25519PrivateKey.generate()
    kid = api.runtime.verifier.keys.kid
    _assert_rejected(api, jwt.encode(customer["claims"], stranger, algorithm="EdDSA", headers={"kid": kid}))


@pytest.mark.parametrize("header", [None, "Basic dXNlcjpwYXNz", "Bearer", "Bearer not-a-jwt"])
def test_missing_or_malformed_authorization_is_401(api: Any, header: str | None) -> None:
    headers = {"Authorization": header} if header is not None else {}
    response = api.client.get("/api/auth/me", headers=headers)
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"
