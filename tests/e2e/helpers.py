"""Small shared steps of the end-to-end tests (what an admin and a customer do through the gateway)."""

from __future__ import annotations

from collections import Counter
from decimal import Decimal
from typing import Any

from tools.shopclient import Customer, Http, login

from .conftest import ADMIN_EMAIL, ADMIN_PASSWORD, Shop


async def admin_of(http: Http, shop: Shop) -> Customer:
    return await login(http, shop.gateway, ADMIN_EMAIL, ADMIN_PASSWORD)


def ledger_by_cause(movements: list[dict[str, Any]]) -> Counter[str]:
    """Units moved per ledger cause (order_commit and release deltas summed)."""
    totals: Counter[str] = Counter()
    for movement in movements:
        totals[movement["cause"]] += int(movement["delta"])
    return totals


def line_total(order: dict[str, Any]) -> Decimal:
    return sum((Decimal(item["line_total"]) for item in order["items"]), Decimal("0"))
