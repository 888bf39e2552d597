"""bKash tokenized checkout (v1.2.0-beta, mode 0011) over httpx: the calls as bKash spells them, with
a per-process token (granted once, refreshed before expiry) and every exchange in the provider log."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

import httpx

from payments.audit import ProviderLog
from payments.domain import bkash_error
from payments.settings import PaymentsSettings

NAME = "bkash"


class BkashUnavailable(Exception):
    """No answer from bKash (timeout, connection error, 5xx, not JSON): the outcome is unknown."""


class BkashRefused(Exception):
    def __init__(self, code: str, message: str, body: dict[str, Any]) -> None:
        super().__init__(f"bKash {code}: {message}")
        self.code = code
        self.message = message
        self.body = body


@dataclass
class _Token:
    id_token: str
    refresh_token: str | None
    renew_at: float


class BkashClient:
    def __init__(self, settings: PaymentsSettings, audit: ProviderLog) -> None:
        self.settings = settings
        self.audit = audit
        self.base = settings.bkash_base
        self._http = httpx.Client(timeout=settings.bkash_timeout)
        self._token: _Token | None = None
        # One grant at a time per process: bKash throttles grant calls.
        self._token_lock = threading.Lock()

    def known_tokens(self) -> tuple[str, ...]:
        token = self._token
        if token is None:
            return ()
        return tuple(t for t in (token.id_token, token.refresh_token) if t)

    def close(self) -> None:
        self._http.close()

    # Tokens

    def _id_token(self, *, force_grant: bool = False) -> str:
        with self._token_lock:
            token = self._token
            if token is not None and not force_grant and time.monotonic() < token.renew_at:
                return token.id_token
            if token is not None and token.refresh_token and not force_grant:
                try:
                    self._token = self._request_token("refresh", {"refresh_token": token.refresh_token})
                    return self._token.id_token
                except (BkashRefused, BkashUnavailable):
                    pass  # an expired or revoked refresh token: grant a fresh pair instead
            self._token = self._request_token("grant", {})
            return self._token.id_token

    def _request_token(self, kind: str, extra: dict[str, Any]) -> _Token:
        body = {"app_key": self.settings.bkash_app_key, "app_secret": self.settings.bkash_app_secret, **extra}
        headers = {"username": self.settings.bkash_username, "password": self.settings.bkash_password}
        status, answer = self._post(f"token/{kind}", f"/tokenized/checkout/token/{kind}", body, headers)
        if status == 401:
            raise BkashRefused("401", "Unauthorized", answer)
        code, message = bkash_error(answer)
        if code is not None or not answer.get("id_token"):
            raise BkashRefused(code or "unknown", message or "no id_token in the answer", answer)
        lifetime = float(answer.get("expires_in") or 3600)
        margin = min(self.settings.bkash_token_margin, lifetime / 2)
        return _Token(
            id_token=str(answer["id_token"]),
            refresh_token=answer.get("refresh_token"),
            renew_at=time.monotonic() + lifetime - margin,
        )

    # Calls with a token

    def call(self, operation: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """One API call; a 401 means the token died early: grant again and retry once."""
        for attempt in range(2):
            headers = {
                "Authorization": self._id_token(force_grant=attempt > 0),
                "X-APP-Key": self.settings.bkash_app_key,
            }
            status, answer = self._post(operation, path, body, headers)
            if status != 401:
                return answer
        raise BkashUnavailable(f"bKash refused {operation} with 401 twice")

    def _post(
        self, operation: str, path: str, body: dict[str, Any], headers: dict[str, str]
    ) -> tuple[int, dict[str, Any]]:
        url = self.base + path
        all_headers = {"Accept": "application/json", "Content-Type": "application/json", **headers}
        try:
            response = self._http.post(url, json=body, headers=all_headers)
        except httpx.HTTPError as exc:
            self.audit.outbound(NAME, operation, url, all_headers, body, {"error": repr(exc)}, None)
            raise BkashUnavailable(f"bKash {operation}: {exc!r}") from exc
        self.audit.outbound(NAME, operation, url, all_headers, body, response.text, response.status_code)
        if response.status_code >= 500:
            raise BkashUnavailable(f"bKash {operation} answered HTTP {response.status_code}")
        try:
            answer = response.json()
        except ValueError as exc:
            raise BkashUnavailable(f"bKash {operation} answered HTTP {response.status_code} without JSON") from exc
        if not isinstance(answer, dict):
            raise BkashUnavailable(f"bKash {operation} answered an unexpected shape")
        return response.status_code, answer

    # The checkout

    def create(self, body: dict[str, Any]) -> dict[str, Any]:
        return self.call("create", "/tokenized/checkout/create", body)

    def execute(self, payment_id: str) -> dict[str, Any]:
        return self.call("execute", "/tokenized/checkout/execute", {"paymentID": payment_id})

    def query(self, payment_id: str) -> dict[str, Any]:
        return self.call("query", "/tokenized/checkout/payment/status", {"paymentID": payment_id})

    def refund(self, body: dict[str, Any]) -> dict[str, Any]:
        return self.call("refund", "/tokenized/checkout/payment/refund", body)

    def refund_status(self, payment_id: str, trx_id: str) -> dict[str, Any]:
        """The same path with only paymentID and trxID: bKash answers the payment's latest refund."""
        return self.call(
            "refund/status", "/tokenized/checkout/payment/refund", {"paymentID": payment_id, "trxID": trx_id}
        )
