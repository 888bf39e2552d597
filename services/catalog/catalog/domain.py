"""Stock rules with no I/O: what an order needs, what is short, what an adjustment may do."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from contracts import OrderLine, Shortage

# Stock is an int4 column; keeping well below its limit means no adjustment can overflow it.
MAX_STOCK = 1_000_000_000
MAX_IMAGES = 10
# An image URL is shown to every customer: https only, and only characters RFC 3986 allows (less the
# quote, which may be percent-encoded), so none can close an HTML attribute, start a tag or smuggle in a
# scheme (javascript:, data:) or whitespace.
# A plain https address of a host: no user or password, an optional port up to 65535. The schema
# shows this pattern; checked_image_url checks the same again for callers outside the API.
_PORT = r"(?::(?:[0-5]?[0-9]{0,4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5]))?"
IMAGE_URL = rf"^https://[A-Za-z0-9._~%!$&()*+,;=-]+{_PORT}(?:[/?#][A-Za-z0-9._~%!$&()*+,;=:@/?#\[\]-]*)?$"
_IMAGE_URL = re.compile(r"https://[A-Za-z0-9._~%!$&()*+,;=:@/?#\[\]-]+")


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


@dataclass(frozen=True)
class OrderDecision:
    """One order's outcome: committed with a ledger movement per product (delta, stock after it), or
    rejected with its shortages and no movement."""

    shortages: list[Shortage]
    movements: dict[uuid.UUID, tuple[int, int]]

    @property
    def committed(self) -> bool:
        return not self.shortages


def decide_in_order(
    orders: Sequence[Mapping[uuid.UUID, int]], levels: Mapping[uuid.UUID, StockLevel]
) -> list[OrderDecision]:
    """Decide orders one after the other, in arrival order, against a stock that each committed order
    takes from: all or nothing per order, so an order short on one line takes nothing, and a later,
    smaller order may still fit what an earlier, rejected one left."""
    current = dict(levels)
    decisions = []
    for wanted in orders:
        short = shortages(wanted, current)
        movements: dict[uuid.UUID, tuple[int, int]] = {}
        if not short:
            for product_id, quantity in wanted.items():
                level = current[product_id]
                current[product_id] = StockLevel(level.stock - quantity, level.is_active)
                movements[product_id] = (-quantity, level.stock - quantity)
        decisions.append(OrderDecision(short, movements))
    return decisions


def net_deltas(decisions: Iterable[OrderDecision]) -> dict[uuid.UUID, int]:
    """What the decisions take from each product in all, in ascending id order (the order rows are
    written in, like the order they were locked in)."""
    totals: dict[uuid.UUID, int] = {}
    for decision in decisions:
        for product_id, (delta, _after) in decision.movements.items():
            totals[product_id] = totals.get(product_id, 0) + delta
    return {product_id: totals[product_id] for product_id in sorted(totals)}


def adjusted_stock(stock: int, delta: int) -> int:
    new_stock = stock + delta
    if new_stock < 0:
        raise StockRuleBroken(f"the adjustment would take the stock below zero (stock {stock}, delta {delta})")
    if new_stock > MAX_STOCK:
        raise StockRuleBroken(f"the stock cannot exceed {MAX_STOCK}")
    return new_stock


def checked_image_url(url: str) -> str:
    """The URL if it is a plain https address of a host, else ValueError (a 422 at the API)."""
    if not _IMAGE_URL.fullmatch(url):
        raise ValueError("an image must be an https:// URL")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - parsing the port is the check: out of range or not a number raises
    except ValueError as exc:
        raise ValueError("an image must be an https:// URL with a valid host and port") from exc
    if not parts.hostname or "@" in parts.netloc:
        raise ValueError("an image URL needs a host and no user name or password")
    return url


def search_terms(q: str) -> list[str]:
    """The words of a search, lower-cased; each becomes a prefix term of a full-text query. Only word
    characters survive, so nothing a user types can break the tsquery syntax."""
    return re.findall(r"\w+", q.lower())


def prefix_tsquery(terms: list[str]) -> str:
    return " & ".join(f"{term}:*" for term in terms)
