"""bKash's result codes: HTTP 200 with `statusCode`/`statusMessage`, or 401 at the gateway."""

from __future__ import annotations

from typing import Any

SUCCESS = "0000"

MESSAGES: dict[str, str] = {
    SUCCESS: "Successful",
    "2001": "Invalid App Key",
    "2002": "Invalid Payment ID",
    "2006": "Invalid amount",
    "2007": "Invalid currency",
    "2008": "Invalid intent",
    "2010": "Invalid OTP",
    "2011": "Invalid PIN",
    "2014": "Wrong PIN",
    "2023": "Insufficient Balance",
    "2025": "Invalid request body",
    "2026": "The reversal amount cannot be greater than the original transaction amount",
    "2029": "Duplicate for all transactions",
    "2033": "Transaction not found",
    "2034": "The transaction cannot be reversed because the original transaction has been reversed",
    "2049": "Invalid Merchant Callback URL",
    "2056": "Invalid Payment State",
    "2062": "The payment has already been completed",
    "2063": "Mode is not valid as per request data",
    "2065": "Mandatory field missing",
    "2068": "Transaction has already been completed",
    "2069": "Transaction has already been cancelled",
    "2074": "The transaction cannot be reversed",
    "2117": "Payment execution already been called before",
    "503": "System is undergoing maintenance. Please try again later",
}


class BkashError(Exception):
    """A refused call, answered with HTTP 200 and its code, as bKash does."""

    def __init__(self, code: str) -> None:
        super().__init__(f"{code} {MESSAGES[code]}")
        self.code = code

    def body(self) -> dict[str, Any]:
        return {"statusCode": self.code, "statusMessage": MESSAGES[self.code]}


class Unauthorized(Exception):
    """A missing, unknown or expired token (or wrong grant credentials), refused at the gateway."""

    body: dict[str, Any] = {"message": "Unauthorized"}
