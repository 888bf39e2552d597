"""bKash tokenized checkout (v1.2.0-beta, mode 0011) over httpx, with a per-process token cache."""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import httpx

from payments.audit import ProviderLogger
from payments.domain import bkash_amount, bkash_error
from payments.settings import PaymentsSettings


class BkashUnavailable(Exception):
    """No answer from bKash (timeout, connection error, not JSON): the outcome is unknown."""


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


class BkashGateway:
    def __init__(self, settings: PaymentsSettings, logger: ProviderLogger) -> None:
        self.settings = settings
        self.logger = logger
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

    def _call(self, operation: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
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
            self._log(operation, url, all_headers, body, {"error": repr(exc)}, None)
            raise BkashUnavailable(f"bKash {operation}: {exc!r}") from exc
        self._log(operation, url, all_headers, body, response.text, response.status_code)
        try:
            answer = response.json()
        except ValueError as exc:
            raise BkashUnavailable(f"bKash {operation} answered HTTP {response.status_code} without JSON") from exc
        if not isinstance(answer, dict):
            raise BkashUnavailable(f"bKash {operation} answered an unexpected shape")
        if response.status_code >= 500:
            raise BkashUnavailable(f"bKash {operation} answered HTTP {response.status_code}")
        return response.status_code, answer

    def _log(
        self, operation: str, url: str, headers: dict[str, str], body: Any, response: Any, status: int | None
    ) -> None:
        self.logger.record(
            direction="outbound",
            provider="bkash",
            operation=operation,
            url=url,
            request={"headers": headers, "body": body},
            response=response,
            status=status,
        )

    # The checkout

    def create_payment(self, *, payment_id: uuid.UUID, user_id: uuid.UUID, amount: Decimal) -> dict[str, Any]:
        answer = self._call(
            "create",
            "/tokenized/checkout/create",
            {
                "mode": "0011",
                "payerReference": str(user_id)[:32],
                "callbackURL": f"{self.settings.public_url.rstrip('/')}/api/payments/bkash/callback",
                "amount": bkash_amount(amount),
                "currency": "BDT",
                "intent": "sale",
                "merchantInvoiceNumber": str(payment_id),
            },
        )
        code, message = bkash_error(answer)
        if code is not None or not answer.get("paymentID") or not answer.get("bkashURL"):
            raise BkashRefused(code or "unknown", message or "no paymentID in the answer", answer)
        return answer

    def execute(self, payment_reference: str) -> dict[str, Any]:
        return self._call("execute", "/tokenized/checkout/execute", {"paymentID": payment_reference})

    def query(self, payment_reference: str) -> dict[str, Any]:
        return self._call("query", "/tokenized/checkout/payment/status", {"paymentID": payment_reference})

    def refund(self, *, payment_reference: str, trx_id: str, amount: Decimal, sku: str, reason: str) -> dict[str, Any]:
        return self._call(
            "refund",
            "/tokenized/checkout/payment/refund",
            {
                "paymentID": payment_reference,
                "trxID": trx_id,
                "amount": bkash_amount(amount),
                "sku": sku[:255],
                "reason": reason[:255],
            },
        )

    def close(self) -> None:
        self._http.close()
