"""TokenVerifier refuses every forged, foreign or stale token; require_admin answers 403 problems."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from fastapi import Depends, FastAPI
from fastapi.testclient import TestClient

from shopkit.auth import ADMIN, CUSTOMER, KeyPair, Principal, TokenVerifier, current_principal, require_admin
from shopkit.problems import Unauthenticated, install_problem_handlers

pytestmark = pytest.mark.unit

ISSUER, AUDIENCE = "shop-auth", "shop"


def new_key() -> ed25519.Ed25519PrivateKey:
    return ed25519.Ed25519PrivateKey.generate()


def public_pem(key: ed25519.Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


KEY = new_key()
VERIFIER = TokenVerifier(KeyPair(None, public_pem(KEY), "EdDSA"), issuer=ISSUER, audience=AUDIENCE)


def claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    base = {
        "sub": str(uuid.uuid4()),
        "role": CUSTOMER,
        "iat": now,
        "exp": now + 900,
        "iss": ISSUER,
        "aud": AUDIENCE,
        "jti": uuid.uuid4().hex,
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def sign(payload: dict[str, Any], key: ed25519.Ed25519PrivateKey = KEY) -> str:
    return jwt.encode(payload, key, algorithm="EdDSA")


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def hand_made(header: dict[str, Any], payload: dict[str, Any], secret: bytes | None) -> str:
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(payload).encode())}"
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest() if secret else b""
    return f"{signing_input}.{b64(signature)}"


def test_good_token_gives_the_principal() -> None:
    payload = claims(role=ADMIN)
    principal = VERIFIER.verify(sign(payload))
    assert principal == Principal(uuid.UUID(payload["sub"]), ADMIN, payload["jti"])
    assert principal.is_admin


def tampered_signature() -> str:
    header, body, signature = sign(claims()).split(".")
    flipped = "A" if signature[0] != "A" else "B"
    return f"{header}.{body}.{flipped}{signature[1:]}"


def tampered_payload() -> str:
    header, _, signature = sign(claims()).split(".")
    return f"{header}.{b64(json.dumps(claims(role=ADMIN)).encode())}.{signature}"


@pytest.mark.parametrize(
    "token",
    [
        pytest.param(tampered_signature, id="tampered signature"),
        pytest.param(tampered_payload, id="payload swapped under a valid signature"),
        pytest.param(lambda: hand_made({"alg": "none", "typ": "JWT"}, claims(role=ADMIN), None), id="alg none"),
        pytest.param(
            lambda: hand_made({"alg": "HS256", "typ": "JWT"}, claims(role=ADMIN), public_pem(KEY)),
            id="HS256 signed with the public key",
        ),
        pytest.param(lambda: sign(claims(iss="someone-else")), id="wrong issuer"),
        pytest.param(lambda: sign(claims(aud="another-app")), id="wrong audience"),
        pytest.param(lambda: sign(claims(exp=int(time.time()) - 120, iat=int(time.time()) - 1000)), id="expired"),
        pytest.param(lambda: sign(claims(), key=new_key()), id="signed by another key"),
        pytest.param(lambda: sign(claims(sub="not-a-uuid")), id="sub not a uuid"),
        pytest.param(lambda: "not.a.token", id="garbage"),
        pytest.param(lambda: "", id="empty"),
        *(
            pytest.param(lambda claim=claim: sign(claims(**{claim: None})), id=f"missing {claim}")
            for claim in ("sub", "role", "exp", "iat", "iss", "aud", "jti")
        ),
    ],
)
def test_bad_tokens_are_unauthenticated(token: Any) -> None:
    with pytest.raises(Unauthenticated):
        VERIFIER.verify(token())


def test_non_string_subject_is_unauthenticated_not_a_crash() -> None:
    with pytest.raises(Unauthenticated):
        VERIFIER.verify(sign(claims(sub=12345)))


@pytest.fixture
def client() -> TestClient:
    app = FastAPI()
    app.state.token_verifier = VERIFIER
    install_problem_handlers(app)

    @app.get("/me")
    def me(principal: Principal = Depends(current_principal)) -> dict[str, str]:
        return {"user_id": str(principal.user_id), "role": principal.role}

    @app.get("/admin")
    def admin(principal: Principal = Depends(require_admin)) -> dict[str, str]:
        return {"role": principal.role}

    return TestClient(app)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_require_admin_refuses_a_customer_with_a_403_problem(client: TestClient) -> None:
    response = client.get("/admin", headers=bearer(sign(claims(role=CUSTOMER))))
    assert response.status_code == 403
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["status"] == 403
    assert client.get("/admin", headers=bearer(sign(claims(role=ADMIN)))).json() == {"role": ADMIN}


def test_missing_or_malformed_credentials_are_401_problems(client: TestClient) -> None:
    for headers in ({}, {"Authorization": "Basic abc"}, {"Authorization": "Bearer "}, bearer(tampered_signature())):
        response = client.get("/me", headers=headers)
        assert response.status_code == 401, headers
        assert response.headers["content-type"] == "application/problem+json"
        assert response.headers["www-authenticate"] == "Bearer"
    payload = claims()
    assert client.get("/me", headers=bearer(sign(payload))).json() == {"user_id": payload["sub"], "role": CUSTOMER}


def fresh_verifier(**kwargs: Any) -> TokenVerifier:
    return TokenVerifier(KeyPair(None, public_pem(KEY), "EdDSA"), issuer=ISSUER, audience=AUDIENCE, **kwargs)


def test_verified_tokens_are_remembered_until_they_expire_and_never_for_a_changed_token(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    verifier = fresh_verifier()
    payload = claims(exp=int(time.time()) + 60)
    token = sign(payload)
    calls = 0
    real = verifier._verify

    def counting(raw: str) -> tuple[Principal, float]:
        nonlocal calls
        calls += 1
        return real(raw)

    monkeypatch.setattr(verifier, "_verify", counting)
    first = verifier.verify(token)
    assert verifier.verify(token) == first and calls == 1
    header, _body, signature = token.split(".")
    forged_body = b64(json.dumps({**payload, "role": ADMIN}).encode())
    with pytest.raises(Unauthenticated):
        verifier.verify(f"{header}.{forged_body}.{signature}")
    # Past its expiry a remembered token is not taken from memory: it is checked (and refused) again.
    monkeypatch.setattr(verifier, "_verify", lambda raw: (_ for _ in ()).throw(Unauthenticated("expired")))
    monkeypatch.setattr("shopkit.auth.time.time", lambda: payload["exp"] + 1)
    with pytest.raises(Unauthenticated):
        verifier.verify(token)


def test_the_verified_token_cache_is_bounded() -> None:
    verifier = fresh_verifier(cache_size=3)
    tokens = [sign(claims()) for _ in range(5)]
    for token in tokens:
        verifier.verify(token)
    assert list(verifier._verified) == tokens[2:]
