"""Pure rules of the auth service: emails, passwords, the login lock, hashing, token signing, and the
settings production refuses."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jwt
import pytest
from argon2 import PasswordHasher
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from pydantic import ValidationError

from auth.domain import (
    InvalidCredentialsFormat,
    canonical_email,
    check_new_password,
    login_retry_after,
    valid_email,
)
from auth.passwords import Passwords
from auth.settings import DEFAULT_ADMIN_PASSWORD, AuthSettings
from auth.tokens import TokenIssuer, new_refresh_token, refresh_token_hash
from shopkit.auth import KeyPair, TokenVerifier
from shopkit.problems import Unauthenticated

pytestmark = pytest.mark.unit

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
WINDOW = timedelta(minutes=15)
# Cheap argon2 parameters: these tests check behaviour, not cost.
FAST_HASHER = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)


def test_emails_are_one_account_whatever_their_case_and_padding() -> None:
    assert canonical_email("  Rahim@Example.COM ") == "rahim@example.com"
    assert valid_email(" Rahim@Example.COM") == "rahim@example.com"


@pytest.mark.parametrize("email", ["", "rahim", "rahim@", "@example.com", "a@b", "a b@c.com", "a@b@c.com", "a@.com"])
def test_malformed_emails_are_refused(email: str) -> None:
    with pytest.raises(InvalidCredentialsFormat):
        valid_email(email)


def test_new_passwords_need_8_to_1024_characters() -> None:
    assert check_new_password("12345678") == "12345678"
    assert check_new_password("x" * 1024) == "x" * 1024
    for refused in ("", "1234567", "x" * 1025):
        with pytest.raises(InvalidCredentialsFormat):
            check_new_password(refused)


def _failures(*minutes_ago: float) -> list[datetime]:
    return [NOW - timedelta(minutes=m) for m in minutes_ago]


def test_fewer_failures_than_the_limit_do_not_lock() -> None:
    assert login_retry_after(_failures(1, 2, 3, 4), now=NOW, max_failures=5, window=WINDOW) is None


def test_the_limit_of_failures_in_the_window_locks_until_the_oldest_leaves_it() -> None:
    # Oldest of the five failed 10 minutes ago: five more minutes to wait.
    retry = login_retry_after(_failures(10, 8, 6, 4, 2), now=NOW, max_failures=5, window=WINDOW)
    assert retry == 300


def test_failures_older_than_the_window_do_not_count() -> None:
    assert login_retry_after(_failures(16, 20, 4, 3, 2, 1), now=NOW, max_failures=5, window=WINDOW) is None


def test_with_more_failures_than_the_limit_the_lock_lasts_until_enough_have_aged_out() -> None:
    retry = login_retry_after(_failures(14, 12, 10, 8, 6, 4), now=NOW, max_failures=5, window=WINDOW)
    # The first to age out (14 minutes ago) leaves five; the lock lifts when the 12-minute one goes too.
    assert retry == 180


def test_naive_times_from_sqlite_are_read_as_utc_and_the_wait_is_at_least_a_second() -> None:
    naive = [(NOW - timedelta(minutes=15) + timedelta(milliseconds=10)).replace(tzinfo=None)] * 5
    assert login_retry_after(naive, now=NOW, max_failures=5, window=WINDOW) == 1


def test_passwords_hash_with_argon2id_and_verify() -> None:
    passwords = Passwords(FAST_HASHER)
    stored = passwords.hash("correct horse")
    assert stored.startswith("$argon2id$") and "correct horse" not in stored
    assert passwords.verify(stored, "correct horse")
    assert not passwords.verify(stored, "Correct horse")
    assert not passwords.verify("not a hash", "correct horse")


def test_an_unknown_account_never_verifies_even_with_the_decoy_password() -> None:
    passwords = Passwords(FAST_HASHER)
    assert not passwords.verify(None, "anything")


def test_weaker_hashes_are_flagged_for_rehash() -> None:
    weak = Passwords(FAST_HASHER).hash("correct horse")
    assert Passwords(PasswordHasher(time_cost=2, memory_cost=16, parallelism=1)).needs_rehash(weak)


def _key_pair() -> KeyPair:
    key = ed25519.Ed25519PrivateKey.generate()
    private_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return KeyPair(private_pem, public_pem, "EdDSA")


def test_access_tokens_pass_the_kits_verifier_with_the_contract_claims() -> None:
    keys = _key_pair()
    issuer = TokenIssuer(keys, issuer="shop-auth", audience="shop", ttl=timedelta(minutes=15))
    user_id = uuid.uuid4()
    token = issuer.access_token(user_id, "admin", now=datetime.now(UTC))
    principal = TokenVerifier(keys, issuer="shop-auth", audience="shop").verify(token)
    assert principal.user_id == user_id and principal.role == "admin"
    assert jwt.get_unverified_header(token)["kid"] == keys.kid
    other = issuer.access_token(user_id, "admin", now=datetime.now(UTC))
    assert jwt.decode(other, options={"verify_signature": False})["jti"] != principal.token_id


def test_access_tokens_expire_after_their_ttl() -> None:
    keys = _key_pair()
    issuer = TokenIssuer(keys, issuer="shop-auth", audience="shop", ttl=timedelta(minutes=15))
    token = issuer.access_token(uuid.uuid4(), "customer", now=datetime.now(UTC) - timedelta(minutes=16))
    with pytest.raises(Unauthenticated):
        TokenVerifier(keys, issuer="shop-auth", audience="shop").verify(token)


def test_signing_needs_the_private_key() -> None:
    keys = _key_pair()
    with pytest.raises(RuntimeError, match="SHOP_JWT_PRIVATE_KEY"):
        TokenIssuer(KeyPair(None, keys.public_pem, "EdDSA"), issuer="i", audience="a", ttl=timedelta(minutes=1))


def test_refresh_tokens_are_random_and_stored_as_sha256() -> None:
    first, second = new_refresh_token(), new_refresh_token()
    assert first != second and len(first) >= 43
    assert refresh_token_hash(first) == refresh_token_hash(first)
    assert len(refresh_token_hash(first)) == 64 and first not in refresh_token_hash(first)


def _production(tmp_path: Path, **overrides: str) -> AuthSettings:
    keys = _key_pair()
    values = {
        "environment": "production",
        "var_dir": str(tmp_path),
        "database_url": "postgresql://shop@db/shop",
        "amqp_url": "amqp://shop@mq/",
        "db_role_password": "role-secret",
        "internal_token": "a-long-random-service-to-service-secret-0123",
        "jwt_public_key": keys.public_pem.decode(),
        "jwt_private_key": (keys.private_pem or b"").decode(),
        "admin_password": "a-real-admin-secret",
    }
    values.update(overrides)
    return AuthSettings(_env_file=None, **values)  # type: ignore[arg-type]


def test_production_starts_with_real_secrets(tmp_path: Path) -> None:
    assert _production(tmp_path).admin_password == "a-real-admin-secret"


def test_production_refuses_the_default_admin_password(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="SHOP_ADMIN_PASSWORD"):
        _production(tmp_path, admin_password=DEFAULT_ADMIN_PASSWORD)


def test_production_refuses_to_run_auth_without_the_private_key(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="SHOP_JWT_PRIVATE_KEY"):
        _production(tmp_path, jwt_private_key="")
