"""The hosted Checkout page a customer sees at a session's `url`."""

from __future__ import annotations

from sandbox.stripe_sandbox.objects import CheckoutSession
from sandbox.web import esc, page

# Two-decimal currencies print as 1250.00; the zero-decimal ones as whole units.
_ZERO_DECIMAL = frozenset({"jpy"})


def money(amount: int, currency: str) -> str:
    if currency in _ZERO_DECIMAL:
        return f"{amount} {currency.upper()}"
    return f"{amount // 100}.{amount % 100:02d} {currency.upper()}"


def _summary(session: CheckoutSession) -> str:
    rows = "".join(
        f"<li>{esc(item.name)} x {item.quantity}: {esc(money(item.amount_total, item.currency))}</li>"
        for item in session.line_items
    )
    return f"<ul>{rows}</ul><p><strong>Total: {esc(money(session.amount_total, session.currency))}</strong></p>"


def checkout_page(session: CheckoutSession) -> str:
    return page(
        "Stripe sandbox checkout",
        _summary(session) + f"<form method='post' action='{esc(session.url)}/pay'>"
        "<label>Email <input type='email' name='email' placeholder='customer@example.com'></label><br>"
        "<label>Card <input name='card' value='4242 4242 4242 4242' readonly></label><br>"
        "<button type='submit' name='outcome' value='success'>Pay</button> "
        "<button type='submit' name='outcome' value='decline'>Pay with a declined card</button>"
        "</form>"
        f"<form method='post' action='{esc(session.url)}/cancel'>"
        "<button type='submit'>Cancel and return to the shop</button></form>"
        "<p class='note'>Test mode: no real money moves.</p>",
    )


def paid_page(session: CheckoutSession) -> str:
    link = ""
    if session.success_url:
        # Stripe fills in the template variable when it sends the customer back.
        target = session.success_url.replace("{CHECKOUT_SESSION_ID}", session.id)
        link = f"<p><a id='return' href='{esc(target)}'>Return to the shop</a></p>"
    if session.payment_status != "paid":
        # A delayed payment method: the order is placed, the money arrives later.
        state = f"Payment {esc(session.payment_intent)} is processing; you will hear once it clears."
        return page(
            "Payment processing", _summary(session) + f"<p id='status' data-status='processing'>{state}</p>{link}"
        )
    return page(
        "Payment complete",
        _summary(session)
        + f"<p id='status' data-status='complete'>Paid. Payment {esc(session.payment_intent)}.</p>{link}",
    )


def declined_page(session: CheckoutSession) -> str:
    return page(
        "Payment declined",
        "<p class='error' id='status' data-status='declined' data-code='card_declined'>"
        "Your card was declined.</p>"
        f"<p><a href='{esc(session.url)}'>Try another card</a></p>",
    )


def cancelled_page(session: CheckoutSession) -> str:
    link = (
        f"<p><a id='return' href='{esc(session.cancel_url)}'>Return to the shop</a></p>" if session.cancel_url else ""
    )
    return page(
        "Checkout cancelled",
        f"<p id='status' data-status='expired'>This checkout was cancelled; nothing was charged.</p>{link}",
    )


def unavailable_page(message: str) -> str:
    return page("Checkout unavailable", f"<p class='error' id='status' data-status='unavailable'>{esc(message)}</p>")
