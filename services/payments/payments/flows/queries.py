"""Reads: one payment, and the paged list (a customer's own; an admin's of every payment, filtered)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import Select, func, select

from payments.domain import statuses_shown_as
from payments.models import Payment
from shopkit.auth import Principal
from shopkit.problems import NotFound
from shopkit.uow import UnitOfWork

_Row = TypeVar("_Row", bound=Any)


@dataclass(frozen=True)
class PaymentFilters:
    page: int = 1
    page_size: int = 20
    order_id: uuid.UUID | None = None
    status: str | None = None
    provider: str | None = None


def get_payment(uow: UnitOfWork, principal: Principal, payment_id: uuid.UUID) -> Payment:
    payment = uow.session.get(Payment, payment_id)
    if payment is None or not (principal.is_admin or payment.user_id == principal.user_id):
        raise NotFound("no such payment")
    return payment


def list_payments(uow: UnitOfWork, principal: Principal, filters: PaymentFilters) -> tuple[list[Payment], int]:
    query = _filtered(select(Payment), principal, filters)
    total = uow.session.scalar(_filtered(select(func.count(Payment.id)), principal, filters)) or 0
    if total <= (filters.page - 1) * filters.page_size:
        return [], total
    items = uow.session.scalars(
        query.order_by(Payment.created_at.desc(), Payment.id)
        .offset((filters.page - 1) * filters.page_size)
        .limit(filters.page_size)
    )
    return list(items), total


def _filtered(query: Select[_Row], principal: Principal, filters: PaymentFilters) -> Select[_Row]:
    if not principal.is_admin:
        query = query.where(Payment.user_id == principal.user_id)
    if filters.order_id is not None:
        query = query.where(Payment.order_id == filters.order_id)
    if filters.status is not None:
        query = query.where(Payment.status.in_(statuses_shown_as(filters.status)))
    if filters.provider is not None:
        query = query.where(Payment.provider == filters.provider)
    return query
