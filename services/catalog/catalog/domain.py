"""Stock rules with no I/O: what an order needs, what is short, what an adjustment may do."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from contracts import OrderLine, Shortage

# Stock is an int4 column; keeping well below its limit means no adjustment can overflow it.
MAX_STOCK = 1_000_000_000


class StockRuleBroken(Exception):
    """An adjustment that would leave the stock outside 0..MAX_STOCK."""


@dataclass(frozen=True)
class StockLevel:
    """What the catalog knows of one product when it decides: its stock and whether it is sold."""

    stock: int
    is_active: bool


def quantities_by_product(lines: Iterable[OrderLine]) -> dict[uuid.UUID, int]:
    """Units wanted per product, in ascending id order: the order in which rows are locked, so that two
    orders sharing products always queue on them in the same sequence and never deadlock."""
    wanted: dict[uuid.UUID, int] = {}
    for line in lines:
        wanted[line.product_id] = wanted.get(line.product_id, 0) + line.quantity
    return {product_id: wanted[product_id] for product_id in sorted(wanted)}


def shortages(wanted: Mapping[uuid.UUID, int], levels: Mapping[uuid.UUID, StockLevel]) -> list[Shortage]:
    """Every product that cannot be served in full. An unknown or archived product is not for sale, so
    it is short with nothing available."""
    short = []
    for product_id, requested in wanted.items():
        level = levels.get(product_id)
        available = level.stock if level is not None and level.is_active else 0
        if available < requested:
            short.append(Shortage(product_id=product_id, requested=requested, available=available))
    return short


def adjusted_stock(stock: int, delta: int) -> int:
    new_stock = stock + delta
    if new_stock < 0:
        raise StockRuleBroken(f"the adjustment would take the stock below zero (stock {stock}, delta {delta})")
    if new_stock > MAX_STOCK:
        raise StockRuleBroken(f"the stock cannot exceed {MAX_STOCK}")
    return new_stock


def search_terms(q: str) -> list[str]:
    """The words of a search, lower-cased; each becomes a prefix term of a full-text query. Only word
    characters survive, so nothing a user types can break the tsquery syntax."""
    return re.findall(r"\w+", q.lower())


def prefix_tsquery(terms: list[str]) -> str:
    return " & ".join(f"{term}:*" for term in terms)
