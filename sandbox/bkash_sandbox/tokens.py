"""Grant and refresh tokens, and the check every API call's `Authorization` goes through."""

from __future__ import annotations

import secrets
import time
from collections.abc import Mapping
from typing import Any

from sandbox.bkash_sandbox.account import OK, Change, MerchantAccount, require
from sandbox.bkash_sandbox.errors import BkashError, Unauthorized
from sandbox.bkash_sandbox.objects import Token


def grant(
    account: MerchantAccount, username: str | None, password: str | None, body: Mapping[str, Any]
) -> dict[str, Any]:
    with account.changing() as change:
        _check_merchant_user(account, username, password)
        app_key, app_secret = require(body, "app_key", "app_secret")
        _check_app(account, app_key, app_secret)
        account.stats.grant += 1
        return _token_json(account, _issue(account, change, app_key, previous=None))


def refresh(
    account: MerchantAccount, username: str | None, password: str | None, body: Mapping[str, Any]
) -> dict[str, Any]:
    with account.changing() as change:
        _check_merchant_user(account, username, password)
        app_key, app_secret, refresh_token = require(body, "app_key", "app_secret", "refresh_token")
        _check_app(account, app_key, app_secret)
        previous = account.refresh_tokens.get(refresh_token)
        if previous is None or previous.refresh_expires_at <= time.time() or previous.app_key != app_key:
            account.stats.unauthorized += 1
            raise Unauthorized
        account.stats.refresh += 1
        return _token_json(account, _issue(account, change, app_key, previous=previous))


def authorize(account: MerchantAccount, id_token: str | None, app_key: str | None) -> Token:
    """The token an API call carries (`Authorization: <id_token>`, no "Bearer") and its app key."""
    with account.lock:
        token = account.tokens.get(id_token or "")
        if token is None or token.expires_at <= time.time():
            account.stats.unauthorized += 1
            raise Unauthorized
        if app_key != token.app_key:
            raise BkashError("2001")
        return token


def expire_tokens(account: MerchantAccount) -> int:
    with account.changing() as change:
        for token in account.tokens.values():
            token.expires_at = 0
            change.touch_token(token)
        return len(account.tokens)


def _check_merchant_user(account: MerchantAccount, username: str | None, password: str | None) -> None:
    settings = account.settings
    if not (
        secrets.compare_digest(username or "", settings.username)
        and secrets.compare_digest(password or "", settings.password)
    ):
        account.stats.unauthorized += 1
        raise Unauthorized


def _check_app(account: MerchantAccount, app_key: str, app_secret: str) -> None:
    settings = account.settings
    if not (
        secrets.compare_digest(app_key, settings.app_key) and secrets.compare_digest(app_secret, settings.app_secret)
    ):
        raise BkashError("2001")


def _issue(account: MerchantAccount, change: Change, app_key: str, previous: Token | None) -> Token:
    now = time.time()
    settings = account.settings
    token = Token(
        id_token=secrets.token_urlsafe(48),
        # A refresh keeps the refresh token (and its lifetime), as bKash does.
        refresh_token=previous.refresh_token if previous else secrets.token_urlsafe(48),
        app_key=app_key,
        expires_at=now + settings.token_lifetime,
        refresh_expires_at=previous.refresh_expires_at if previous else now + settings.refresh_token_lifetime,
    )
    account.tokens[token.id_token] = token
    account.refresh_tokens[token.refresh_token] = token
    change.touch_token(token)
    return token


def _token_json(account: MerchantAccount, token: Token) -> dict[str, Any]:
    return {
        **OK,
        "id_token": token.id_token,
        "token_type": "Bearer",
        "expires_in": account.settings.token_lifetime,
        "refresh_token": token.refresh_token,
    }
