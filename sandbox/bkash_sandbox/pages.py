"""The hosted pages at `bkashURL`: wallet number, then OTP, then PIN."""

from __future__ import annotations

from sandbox.bkash_sandbox.objects import Payment
from sandbox.web import esc, page


def _header(payment: Payment) -> str:
    return (
        f"<p>Merchant invoice <strong>{esc(payment.merchant_invoice_number)}</strong><br>"
        f"Amount <strong>{esc(payment.amount_text)} {esc(payment.currency)}</strong></p>"
    )


def _error(message: str | None) -> str:
    return f"<p class='error' id='error'>{esc(message)}</p>" if message else ""


def _cancel(base: str) -> str:
    return f"<form method='post' action='{esc(base)}/cancel'><button type='submit'>Cancel</button></form>"


def wallet_page(payment: Payment, base: str, error: str | None = None) -> str:
    return page(
        "bKash sandbox payment",
        _header(payment) + _error(error) + f"<form method='post' action='{esc(base)}/wallet' data-step='wallet'>"
        "<label>Your bKash account number "
        "<input name='wallet' inputmode='numeric' placeholder='01770618575' required></label><br>"
        "<button type='submit'>Confirm</button></form>"
        + _cancel(base)
        + "<p class='note'>Sandbox wallets: 01770618575, 01770618576, 01877722345 (01929918378 has an "
        "insufficient balance). OTP 123456, PIN 12121.</p>",
    )


def otp_page(payment: Payment, base: str) -> str:
    return page(
        "bKash verification code",
        _header(payment)
        + f"<p>A verification code was sent to {esc(payment.wallet)}.</p>"
        + f"<form method='post' action='{esc(base)}/otp' data-step='otp'>"
        "<label>Verification code <input name='otp' inputmode='numeric' required></label><br>"
        "<button type='submit'>Confirm</button></form>" + _cancel(base),
    )


def pin_page(payment: Payment, base: str) -> str:
    return page(
        "bKash PIN",
        _header(payment) + f"<form method='post' action='{esc(base)}/pin' data-step='pin'>"
        "<label>bKash PIN <input name='pin' type='password' inputmode='numeric' required></label><br>"
        "<button type='submit'>Confirm</button></form>" + _cancel(base),
    )


def unavailable_page(message: str) -> str:
    return page("bKash payment unavailable", f"<p class='error' id='error'>{esc(message)}</p>")
