"""The money and stock invariants, checked from outside: `python -m tools.audit [--url URL]`.

With an admin's credentials (SHOP_AUDIT_EMAIL, SHOP_AUDIT_PASSWORD) and through the gateway only, it
reads every order, payment and product (and each product's stock ledger) from the paged admin lists
and checks:

- a confirmed (shipped, delivered) order has exactly one succeeded, unrefunded payment of its total
  (a partial refund it was given is the order's own `refunded_amount`; the payment is
  `partially_refunded`, or `refund_pending` while the rest is being refunded), and no other payment
  keeps money;
- a cancelled or refunded order has captured minus refunded equal to zero over its payments;
- every payment belongs to an order the shop knows;
- each product's ledger sums to its stock, an order's stock is committed at most once per product,
  released at most once, and its `order_commit` movements match the lines of confirmed orders (kept
  out, or released whole by a partial refund that restocked), released in full for cancelled ones,
  either kept out whole or released whole for refunded ones.

Orders still on their way (pending_payment, paid, refund_pending) are not judged. Prints a table of
the violations and exits 1 if there is any, 0 if none, 2 when the shop cannot be read.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, TextIO

import httpx

DEFAULT_URL = "http://127.0.0.1:8000"
PAGE_SIZE = 100
CONFIRMED = frozenset({"confirmed", "shipped", "delivered"})
ENDED_WITHOUT_SALE = frozenset({"cancelled"})
PAYING = frozenset({"succeeded", "partially_refunded"})
ZERO = Decimal("0")


@dataclass(frozen=True, order=True)
class Violation:
    kind: str
    subject: str
    detail: str


def _money(value: Any) -> Decimal:
    return Decimal(str(value or "0"))


def _kept(payment: dict[str, Any]) -> Decimal:
    """Money the shop holds from this payment: what the provider took less what went back."""
    return _money(payment.get("captured_amount")) - _money(payment.get("refunded_amount"))


def check_orders(orders: Sequence[dict[str, Any]], payments: Sequence[dict[str, Any]]) -> list[Violation]:
    found: list[Violation] = []
    by_order: dict[str, list[dict[str, Any]]] = defaultdict(list)
    known = {str(order["id"]) for order in orders}
    for payment in payments:
        by_order[str(payment["order_id"])].append(payment)
        if str(payment["order_id"]) not in known:
            found.append(Violation("payment-without-order", f"payment {payment['id']}", f"order {payment['order_id']}"))
    for order in orders:
        subject, status = f"order {order['id']}", order["status"]
        mine = by_order.get(str(order["id"]), [])
        if status in CONFIRMED:
            found.extend(_check_confirmed(subject, order, mine))
        elif status in ENDED_WITHOUT_SALE or status == "refunded":
            kept = sum((_kept(p) for p in mine), ZERO)
            if kept != ZERO:
                found.append(Violation("money-kept", subject, f"{status} but captured - refunded = {kept}"))
    return found


def _check_confirmed(subject: str, order: dict[str, Any], payments: list[dict[str, Any]]) -> Iterator[Violation]:
    # The paying payment is refund_pending from the admin's refund of the rest until the provider has
    # done it and the order learns (it then moves to refunded): still the one paying, not a second one.
    paying = [p for p in payments if p["status"] in PAYING] or [p for p in payments if p["status"] == "refund_pending"]
    if len(paying) != 1:
        yield Violation("payments-of-confirmed", subject, f"{order['status']} with {len(paying)} succeeded payments")
        return
    [payment] = paying
    total, refunded = _money(order["total_amount"]), _money(order.get("refunded_amount"))
    if _money(payment["amount"]) != total or _money(payment.get("captured_amount")) != total:
        yield Violation("payment-amount", subject, f"total {total}, payment {payment['id']} of {payment['amount']}")
    if _money(payment.get("refunded_amount")) != refunded:
        yield Violation(
            "refund-unrecorded",
            subject,
            f"payment {payment['id']} refunded {payment.get('refunded_amount')}, order says {refunded}",
        )
    for other in payments:
        if other is not payment and _kept(other) != ZERO:
            yield Violation("money-kept", subject, f"second payment {other['id']} keeps {_kept(other)}")


def check_products(
    products: Sequence[dict[str, Any]], ledgers: dict[str, list[dict[str, Any]]], orders: Sequence[dict[str, Any]]
) -> list[Violation]:
    found: list[Violation] = []
    for product in products:
        subject = f"product {product['id']} ({product.get('sku')})"
        movements = ledgers.get(str(product["id"]), [])
        total = sum(int(m["delta"]) for m in movements)
        if total != int(product["stock"]):
            found.append(Violation("ledger-sum", subject, f"ledger sums to {total}, stock is {product['stock']}"))
        found.extend(_check_commits(subject, str(product["id"]), movements, orders))
    return found


def _check_commits(
    subject: str, product_id: str, movements: list[dict[str, Any]], orders: Sequence[dict[str, Any]]
) -> Iterator[Violation]:
    net: dict[str, int] = defaultdict(int)
    commits: dict[str, int] = defaultdict(int)
    releases: dict[str, int] = defaultdict(int)
    for movement in movements:
        if movement["cause"] in ("order_commit", "release") and movement.get("order_id"):
            net[str(movement["order_id"])] += int(movement["delta"])
            commits[str(movement["order_id"])] += movement["cause"] == "order_commit"
            releases[str(movement["order_id"])] += movement["cause"] == "release"
    for order_id, count in commits.items():
        if count > 1:
            yield Violation("committed-twice", subject, f"order {order_id} committed {count} times")
    for order_id, count in releases.items():
        if count > 1:
            yield Violation("released-twice", subject, f"order {order_id} released {count} times")
    known = set()
    for order in orders:
        order_id, status = str(order["id"]), order["status"]
        known.add(order_id)
        quantity = sum(int(i["quantity"]) for i in order["items"] if str(i["product_id"]) == product_id)
        moved = net.get(order_id, 0)
        if not _moved_as_it_should(order, quantity, moved, commits.get(order_id, 0)):
            yield Violation("commit-mismatch", subject, f"{status} order {order_id} of {quantity} moved {moved}")
    for order_id in net.keys() - known:
        yield Violation("commit-without-order", subject, f"unknown order {order_id}")


def _moved_as_it_should(order: dict[str, Any], quantity: int, moved: int, commits: int) -> bool:
    """Whether an order's net stock movement of one product fits its status."""
    status = order["status"]
    if status in CONFIRMED:
        # A partial refund that said `restock` (goods sent back) released the order's commit whole.
        restocked = moved == 0 and _money(order.get("refunded_amount")) > ZERO
        return (moved == -quantity or restocked) and commits == (1 if quantity else 0)
    if status in ENDED_WITHOUT_SALE:
        return moved == 0
    # Refunded: the commit released exactly (restocked) or kept out whole (refunded after shipping
    # without a return); in flight: not judged.
    return status != "refunded" or moved in (0, -quantity)


# Reading the shop


class ShopReader:
    def __init__(self, url: str, email: str, password: str, *, timeout: float = 30.0) -> None:
        self.client = httpx.Client(base_url=url.rstrip("/"), timeout=timeout)
        answer = self.client.post("/api/auth/login", json={"email": email, "password": password})
        if answer.status_code != 200:
            raise RuntimeError(f"login refused ({answer.status_code}): {answer.text[:200]}")
        self.client.headers["Authorization"] = f"Bearer {answer.json()['access_token']}"

    def close(self) -> None:
        self.client.close()

    def pages(self, path: str, **params: Any) -> list[dict[str, Any]]:
        """Every item of a paged list, each once (a list read while it grows may repeat one)."""
        items: dict[str, dict[str, Any]] = {}
        page = 1
        while True:
            answer = self.client.get(path, params={**params, "page": page, "page_size": PAGE_SIZE})
            if answer.status_code != 200:
                raise RuntimeError(f"GET {path} page {page}: {answer.status_code} {answer.text[:200]}")
            body = answer.json()
            for item in body["items"]:
                items.setdefault(str(item["id"]), item)
            if not body["items"] or page * PAGE_SIZE >= int(body["total"]):
                return list(items.values())
            page += 1


def audit(url: str, email: str, password: str) -> list[Violation]:
    reader = ShopReader(url, email, password)
    try:
        orders = reader.pages("/api/orders")
        payments = reader.pages("/api/payments")
        products = reader.pages("/api/products", include_archived="true")
        ledgers = {str(p["id"]): reader.pages(f"/api/products/{p['id']}/stock-movements") for p in products}
    finally:
        reader.close()
    return sorted(check_orders(orders, payments) + check_products(products, ledgers, orders))


def print_table(violations: Sequence[Violation], out: TextIO) -> None:
    if not violations:
        print("no violation", file=out)
        return
    rows = [("kind", "subject", "detail"), *((v.kind, v.subject, v.detail) for v in violations)]
    widths = [max(len(row[i]) for row in rows) for i in range(2)]
    for kind, subject, detail in rows:
        print(f"{kind:<{widths[0]}}  {subject:<{widths[1]}}  {detail}", file=out)
    print(f"{len(violations)} violation(s)", file=out)


def main(argv: Sequence[str] | None = None, out: TextIO = sys.stdout) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.audit", description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default=os.environ.get("SHOP_AUDIT_URL", DEFAULT_URL), help="the gateway")
    args = parser.parse_args(argv)
    email, password = os.environ.get("SHOP_AUDIT_EMAIL"), os.environ.get("SHOP_AUDIT_PASSWORD")
    if not email or not password:
        print("SHOP_AUDIT_EMAIL and SHOP_AUDIT_PASSWORD (an admin's) are required", file=sys.stderr)
        return 2
    try:
        violations = audit(args.url, email, password)
    except (RuntimeError, httpx.HTTPError) as exc:
        print(f"cannot audit {args.url}: {exc}", file=sys.stderr)
        return 2
    print_table(violations, out)
    return 1 if violations else 0


if __name__ == "__main__":
    sys.exit(main())
