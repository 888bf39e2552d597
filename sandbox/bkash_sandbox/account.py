"""The fake bKash merchant account: its tokens, payments and refunds, behind one lock.

Each use case (tokens.py, payments.py, refunds.py, customer.py) is one step inside `changing()`,
so two Execute calls racing for the same payment can never both take the money. With a journal (a
state directory) the objects a step touched are written before its answer leaves.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from typing import Any

from sandbox.bkash_sandbox.errors import BkashError
from sandbox.bkash_sandbox.objects import CustomerStep, Payment, Token, TransactionStatus
from sandbox.bkash_sandbox.settings import BkashSandboxSettings
from sandbox.persistence import Journal

API_VERSION = "1.2.0-beta"
_AMOUNT = re.compile(r"^\d+(\.\d{1,2})?$")


@dataclass
class Stats:
    grant: int = 0
    refresh: int = 0
    create: int = 0
    execute: int = 0
    execute_completed: int = 0
    query: int = 0
    search: int = 0
    refund: int = 0
    unauthorized: int = 0


@dataclass
class Change:
    rows: dict[tuple[str, str], Callable[[], dict[str, Any]]] = field(default_factory=dict)

    def touch_payment(self, payment: Payment) -> None:
        self.rows[("payment", payment.payment_id)] = payment.to_state

    def touch_token(self, token: Token) -> None:
        self.rows[("token", token.id_token)] = token.to_state


class MerchantAccount:
    def __init__(self, settings: BkashSandboxSettings, journal: Journal | None = None) -> None:
        self.settings = settings
        self.journal = journal
        self.lock = threading.Lock()
        self.tokens: dict[str, Token] = {}
        self.refresh_tokens: dict[str, Token] = {}
        self.payments: dict[str, Payment] = {}
        self.payment_by_trx: dict[str, str] = {}
        # Invoices already paid: bKash refuses a second payment for them (2029).
        self.paid_invoices: set[str] = set()
        self.stats = Stats()

    @contextmanager
    def changing(self) -> Iterator[Change]:
        change = Change()
        with self.lock:
            try:
                yield change
            finally:
                if self.journal is not None and change.rows:
                    self.journal.write([(kind, key, state()) for (kind, key), state in change.rows.items()])

    def payment(self, payment_id: str) -> Payment:
        """The payment (expired first if its window passed: nothing can observe expiry sooner)."""
        payment = self.payments.get(payment_id)
        if payment is None:
            raise BkashError("2002")
        if (
            payment.status is TransactionStatus.INITIATED
            and time.time() - payment.created_at > self.settings.payment_window
        ):
            payment.status = TransactionStatus.EXPIRED
            payment.step = CustomerStep.ENDED
        return payment

    def stats_json(self) -> dict[str, int]:
        with self.lock:
            return {**asdict(self.stats), "payments": len(self.payments)}

    def reset(self) -> None:
        with self.lock:
            for store in (self.tokens, self.refresh_tokens, self.payments, self.payment_by_trx):
                store.clear()
            self.paid_invoices.clear()
            self.stats = Stats()
            if self.journal is not None:
                self.journal.clear()

    def load(self) -> None:
        """Read back what the journal holds (at start-up, before serving)."""
        if self.journal is None:
            return
        with self.lock:
            for _, state in self.journal.load("token"):
                token = Token(**state)
                self.tokens[token.id_token] = token
                self.refresh_tokens[token.refresh_token] = token
            for payment_id, state in self.journal.load("payment"):
                payment = Payment.from_state(state)
                self.payments[payment_id] = payment
                if payment.trx_id:
                    self.payment_by_trx[payment.trx_id] = payment_id
                if payment.status is TransactionStatus.COMPLETED:
                    self.paid_invoices.add(payment.merchant_invoice_number)


def parse_amount(value: object) -> tuple[Decimal, str] | None:
    """A positive amount with at most two decimals, sent as a string ("10.50") or a JSON number."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        return None
    text = value.strip() if isinstance(value, str) else str(value)
    if not _AMOUNT.match(text) or Decimal(text) <= 0:
        return None
    return Decimal(text), text


def text_of(body: Mapping[str, Any], name: str) -> str | None:
    """A field's value as text; numbers are accepted (clients differ), empty means missing."""
    value = body.get(name)
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        value = str(value)
    if not isinstance(value, str) or not value.strip():
        return None
    return value.strip()


def require(body: Mapping[str, Any], *names: str) -> list[str]:
    values = [text_of(body, name) for name in names]
    if any(value is None for value in values):
        raise BkashError("2065")
    return [value for value in values if value is not None]


OK = {"statusCode": "0000", "statusMessage": "Successful"}
