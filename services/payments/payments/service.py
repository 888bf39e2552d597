"""Use cases of the payments service. Provider calls happen between units of work, never inside one:
a state transition (or a ledger row) claims the work first, so a retry or a second request cannot
repeat it, and the provider's answer is recorded in a unit of work of its own."""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import stripe
from sqlalchemy import func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from contracts import OrderLine, PaymentFailed, PaymentRefunded, PaymentSucceeded
from payments.audit import ProviderLogger, for_payment
from payments.bkash_adapter import BkashGateway, BkashRefused, BkashUnavailable
from payments.domain import (
    FULL_REFUND_KEY,
    OPEN_STATUSES,
    SUCCESS_FROM,
    BkashOutcome,
    OrderStatus,
    PaymentStatus,
    RefundStatus,
    bkash_error,
    classify_execute,
    classify_query,
    decide_on_success,
    from_minor_units,
    money,
    same_money,
)
from payments.models import PayableOrder, Payment, Refund, WebhookEvent, utcnow
from payments.settings import PaymentsSettings
from payments.stripe_adapter import ProviderUnavailable, StripeGateway
from shopkit.auth import Principal
from shopkit.db import Database
from shopkit.problems import Conflict, NotFound, ServiceUnavailable, Unprocessable
from shopkit.uow import UnitOfWork, unit_of_work

log = logging.getLogger("payments.service")

REFUND_LEASE = timedelta(seconds=60)


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@dataclass(frozen=True)
class StartedPayment:
    payment: Payment
    created: bool


class PaymentService:
    def __init__(
        self,
        db: Database,
        settings: PaymentsSettings,
        stripe_gateway: StripeGateway,
        bkash: BkashGateway,
        logger: ProviderLogger,
    ) -> None:
        self.db = db
        self.settings = settings
        self.stripe = stripe_gateway
        self.bkash = bkash
        self.logger = logger

    # Starting a payment

    def start_payment(
        self, principal: Principal, order_id: uuid.UUID, provider: str, idempotency_key: str | None
    ) -> StartedPayment:
        sessions_to_expire: list[str] = []
        with unit_of_work(self.db) as uow:
            session = uow.session
            if idempotency_key:
                existing = session.scalars(
                    select(Payment).where(
                        Payment.user_id == principal.user_id, Payment.idempotency_key == idempotency_key
                    )
                ).first()
                if existing is not None:
                    return self._replayed(existing, order_id, provider)
            order = session.get(PayableOrder, order_id, with_for_update=True)
            if order is None:
                raise Conflict(
                    "this order is not payable yet: payments has not received it (it was probably just "
                    "placed); retry in a moment",
                    retryable=True,
                )
            if order.user_id != principal.user_id:
                raise NotFound("no such order")
            if order.status != OrderStatus.PENDING_PAYMENT:
                raise Conflict(f"the order is {order.status}, not pending_payment")
            if provider == "bkash" and order.currency != "BDT":
                raise Unprocessable(f"bKash takes BDT only; this order is in {order.currency}")
            for open_payment in session.scalars(
                select(Payment).where(Payment.order_id == order_id, Payment.status.in_(OPEN_STATUSES)).with_for_update()
            ):
                if open_payment.provider == provider:
                    return StartedPayment(open_payment, created=False)
                if open_payment.status == PaymentStatus.EXECUTING:
                    raise Conflict("a bKash payment for this order is being completed; wait for its outcome")
                open_payment.status = PaymentStatus.CANCELLED
                open_payment.failure_reason = f"replaced by a {provider} payment"
                if open_payment.provider == "stripe" and open_payment.provider_reference:
                    sessions_to_expire.append(open_payment.provider_reference)
            payment = Payment(
                id=uuid.uuid4(),
                order_id=order.order_id,
                user_id=order.user_id,
                provider=provider,
                status=PaymentStatus.INITIATED,
                amount=order.amount,
                currency=order.currency,
                idempotency_key=idempotency_key,
            )
            lines = list(order.lines)
            session.add(payment)
            try:
                uow.commit()
            except IntegrityError:
                # A concurrent request with the same Idempotency-Key won the race: answer with its payment.
                uow.rollback()
                return self.start_payment(principal, order_id, provider, idempotency_key)
        for session_id in sessions_to_expire:
            self._expire_quietly(session_id)
        return StartedPayment(self._open_at_provider(payment, lines), created=True)

    def _replayed(self, existing: Payment, order_id: uuid.UUID, provider: str) -> StartedPayment:
        if existing.order_id != order_id or existing.provider != provider:
            raise Conflict("this Idempotency-Key was already used for another payment request")
        return StartedPayment(existing, created=False)

    def _open_at_provider(self, payment: Payment, lines: list[dict[str, Any]]) -> Payment:
        try:
            with for_payment(payment.id):
                if payment.provider == "stripe":
                    checkout = self.stripe.create_checkout_session(
                        payment_id=payment.id,
                        order_id=payment.order_id,
                        amount=payment.amount,
                        currency=payment.currency,
                        lines=lines,
                    )
                    reference, url = checkout.id, checkout.url
                else:
                    answer = self.bkash.create_payment(
                        payment_id=payment.id, user_id=payment.user_id, amount=payment.amount
                    )
                    reference, url = str(answer["paymentID"]), str(answer["bkashURL"])
        except (ProviderUnavailable, BkashRefused, BkashUnavailable) as exc:
            log.warning("provider refused to open a payment", extra={"payment_id": str(payment.id), "error": str(exc)})
            with unit_of_work(self.db) as uow:
                row = uow.session.get(Payment, payment.id, with_for_update=True)
                if row is not None and row.status == PaymentStatus.INITIATED:
                    row.status = PaymentStatus.FAILED
                    row.failure_reason = f"the provider could not open the payment: {exc}"[:1000]
                    uow.commit()
            raise ServiceUnavailable(f"{payment.provider} is not available right now; try again") from exc
        with unit_of_work(self.db) as uow:
            row = uow.session.get(Payment, payment.id, with_for_update=True)
            assert row is not None
            row.provider_reference = reference
            row.redirect_url = url
            uow.commit()
            cancelled_meanwhile = row.status == PaymentStatus.CANCELLED
        if cancelled_meanwhile and payment.provider == "stripe":
            # OrderCancelled arrived while the session was being created: do not leave it payable.
            self._expire_quietly(reference)
        return row

    def _expire_quietly(self, session_id: str) -> None:
        try:
            self.stripe.expire_session(session_id)
        except stripe.StripeError:
            log.warning("could not expire a checkout session", extra={"session": session_id}, exc_info=True)

    # Reading

    def get_payment(self, principal: Principal, payment_id: uuid.UUID) -> Payment:
        with unit_of_work(self.db) as uow:
            payment = uow.session.get(Payment, payment_id)
        if payment is None or not (principal.is_admin or payment.user_id == principal.user_id):
            raise NotFound("no such payment")
        return payment

    def list_payments(
        self, principal: Principal, order_id: uuid.UUID | None, page: int, page_size: int
    ) -> tuple[list[Payment], int]:
        query = select(Payment)
        if order_id is not None:
            query = query.where(Payment.order_id == order_id)
        if not principal.is_admin:
            query = query.where(Payment.user_id == principal.user_id)
        with unit_of_work(self.db) as uow:
            total = uow.session.scalar(select(func.count()).select_from(query.subquery())) or 0
            items = list(
                uow.session.scalars(
                    query.order_by(Payment.created_at.desc(), Payment.id)
                    .offset((page - 1) * page_size)
                    .limit(page_size)
                )
            )
        return items, total

    # Success, failure, refund: the state changes, inside a caller's unit of work

    def record_success(
        self, uow: UnitOfWork, payment: Payment, *, transaction_id: str | None, amount: Decimal, currency: str
    ) -> uuid.UUID | None:
        """A provider verified the money was taken. Returns the id of a refund to run, if any."""
        if payment.status not in SUCCESS_FROM:
            return None
        if not same_money(payment.amount, payment.currency, amount, currency):
            log.error(
                "provider amount does not match the payment: not marked paid",
                extra={
                    "payment_id": str(payment.id),
                    "expected": f"{payment.amount} {payment.currency}",
                    "got": f"{amount} {currency}",
                },
            )
            self.record_failure(
                uow, payment, PaymentStatus.FAILED, "amount or currency mismatch at the provider", force=True
            )
            return None
        session = uow.session
        order = session.get(PayableOrder, payment.order_id, with_for_update=True)
        other_paid = session.scalar(
            select(func.count())
            .select_from(Payment)
            .where(
                Payment.order_id == payment.order_id,
                Payment.id != payment.id,
                Payment.status.in_((PaymentStatus.SUCCEEDED, PaymentStatus.REFUND_PENDING, PaymentStatus.REFUNDED)),
            )
        )
        payment.status = PaymentStatus.SUCCEEDED
        payment.provider_transaction_id = transaction_id
        payment.failure_reason = None
        decision = decide_on_success(order.status if order else None, bool(other_paid))
        if decision.refund_reason is not None:
            log.warning(
                "payment succeeded for an order that cannot take it; refunding",
                extra={"payment_id": str(payment.id), "reason": decision.refund_reason},
            )
            return self.open_refund(uow, payment, decision.refund_reason)
        if order is not None:
            order.status = OrderStatus.PAID
        uow.emit(
            PaymentSucceeded(
                payment_id=payment.id,
                order_id=payment.order_id,
                provider=payment.provider,  # type: ignore[arg-type]
                amount=payment.amount,
                currency=payment.currency,
                items=[OrderLine.model_validate(line) for line in (order.lines if order else [])],
            ),
            correlation_id=payment.order_id,
        )
        return None

    def record_failure(
        self, uow: UnitOfWork, payment: Payment, status: PaymentStatus, reason: str, *, force: bool = False
    ) -> None:
        if payment.status not in OPEN_STATUSES and not force:
            return
        payment.status = status
        payment.failure_reason = reason[:1000]
        uow.emit(
            PaymentFailed(
                payment_id=payment.id,
                order_id=payment.order_id,
                provider=payment.provider,  # type: ignore[arg-type]
                reason=reason,
            ),
            correlation_id=payment.order_id,
        )

    def open_refund(self, uow: UnitOfWork, payment: Payment, reason: str) -> uuid.UUID | None:
        """Write the full-refund ledger row (at most one per payment); the provider is asked after commit."""
        if payment.status != PaymentStatus.SUCCEEDED:
            return None
        existing = uow.session.scalars(
            select(Refund).where(Refund.payment_id == payment.id, Refund.idempotency_key == FULL_REFUND_KEY)
        ).first()
        if existing is not None:
            return existing.id if existing.status == RefundStatus.PENDING else None
        refund = Refund(
            id=uuid.uuid4(),
            payment_id=payment.id,
            idempotency_key=FULL_REFUND_KEY,
            amount=payment.amount,
            currency=payment.currency,
            reason=reason[:1000],
            status=RefundStatus.PENDING,
            attempts=0,
        )
        uow.session.add(refund)
        payment.status = PaymentStatus.REFUND_PENDING
        return refund.id

    # Refunds

    def request_refund(
        self, payment_id: uuid.UUID | None, order_id: uuid.UUID | None, reason: str, uow: UnitOfWork
    ) -> uuid.UUID | None:
        """RefundRequested / admin refund: refund the named payment, or the order's paying one."""
        session = uow.session
        payment: Payment | None
        if payment_id is not None:
            payment = session.get(Payment, payment_id, with_for_update=True)
        else:
            payment = session.scalars(
                select(Payment)
                .where(Payment.order_id == order_id, Payment.status == PaymentStatus.SUCCEEDED)
                .order_by(Payment.created_at)
                .with_for_update()
            ).first()
        if payment is None:
            log.warning(
                "refund requested for an unknown payment",
                extra={"payment_id": str(payment_id), "order_id": str(order_id)},
            )
            return None
        return self.open_refund(uow, payment, reason)

    def admin_refund(self, payment_id: uuid.UUID, reason: str) -> Payment:
        with unit_of_work(self.db) as uow:
            payment = uow.session.get(Payment, payment_id, with_for_update=True)
            if payment is None:
                raise NotFound("no such payment")
            if payment.status not in (PaymentStatus.SUCCEEDED, PaymentStatus.REFUND_PENDING, PaymentStatus.REFUNDED):
                raise Conflict(f"only a succeeded payment can be refunded; this one is {payment.status}")
            refund_id = self.open_refund(uow, payment, reason)
            uow.commit()
        if refund_id is not None:
            self.run_refund(refund_id)
        with unit_of_work(self.db) as uow:
            refreshed = uow.session.get(Payment, payment_id)
            assert refreshed is not None
            return refreshed

    def run_refund(self, refund_id: uuid.UUID) -> None:
        """Ask the provider for a pending ledger row's refund, once per lease, then record the outcome."""
        with unit_of_work(self.db) as uow:
            claimed = uow.session.execute(  # type: ignore[attr-defined]
                update(Refund)
                .where(
                    Refund.id == refund_id,
                    Refund.status == RefundStatus.PENDING,
                    or_(Refund.claimed_until.is_(None), Refund.claimed_until < utcnow()),
                )
                .values(claimed_until=utcnow() + REFUND_LEASE, attempts=Refund.attempts + 1)
            ).rowcount
            uow.commit()
            if not claimed:
                return
            refund = uow.session.get(Refund, refund_id)
            payment = uow.session.get(Payment, refund.payment_id) if refund else None
        assert refund is not None and payment is not None
        try:
            with for_payment(payment.id):
                provider_refund_id = self._refund_at_provider(payment, refund)
        except Exception as exc:
            log.warning(
                "refund failed at the provider; will retry", extra={"refund_id": str(refund_id), "error": str(exc)}
            )
            with unit_of_work(self.db) as uow:
                uow.session.execute(
                    update(Refund)
                    .where(Refund.id == refund_id)
                    .values(
                        last_error=str(exc)[:2000],
                        claimed_until=utcnow() + timedelta(seconds=self.settings.sweep_interval),
                    )
                )
                uow.commit()
            return
        with unit_of_work(self.db) as uow:
            refund_row = uow.session.get(Refund, refund_id, with_for_update=True)
            payment_row = uow.session.get(Payment, payment.id, with_for_update=True)
            assert refund_row is not None and payment_row is not None
            if refund_row.status != RefundStatus.PENDING:
                return
            refund_row.status = RefundStatus.SUCCEEDED
            refund_row.provider_refund_id = provider_refund_id
            refund_row.claimed_until = None
            self._mark_refunded(uow, payment_row, refund_row.amount, refund_row.reason)
            uow.commit()

    def _mark_refunded(self, uow: UnitOfWork, payment: Payment, amount: Decimal, reason: str) -> None:
        payment.status = PaymentStatus.REFUNDED
        uow.emit(
            PaymentRefunded(
                payment_id=payment.id,
                order_id=payment.order_id,
                provider=payment.provider,  # type: ignore[arg-type]
                amount=amount,
                currency=payment.currency,
                reason=reason,
            ),
            correlation_id=payment.order_id,
        )

    def _refund_at_provider(self, payment: Payment, refund: Refund) -> str | None:
        if not payment.provider_transaction_id:
            raise RuntimeError("the payment has no provider transaction to refund")
        if payment.provider == "stripe":
            try:
                return self.stripe.refund(
                    payment_intent=payment.provider_transaction_id,
                    amount=refund.amount,
                    refund_id=refund.id,
                    reason=refund.reason,
                )
            except stripe.InvalidRequestError as exc:
                if exc.code == "charge_already_refunded":
                    return None  # refunded before (at Stripe, or by a run whose answer was lost)
                raise
        assert payment.provider_reference is not None
        answer = self.bkash.refund(
            payment_reference=payment.provider_reference,
            trx_id=payment.provider_transaction_id,
            amount=refund.amount,
            sku=str(payment.order_id),
            reason=refund.reason,
        )
        code, message = bkash_error(answer)
        if code == "2034":
            return None  # already reversed: a previous attempt's answer was lost
        if code is not None:
            raise BkashRefused(code, message or "", answer)
        return str(answer.get("refundTrxID") or "") or None

    def run_pending_refunds(self) -> int:
        with unit_of_work(self.db) as uow:
            due = list(
                uow.session.scalars(
                    select(Refund.id)
                    .where(
                        Refund.status == RefundStatus.PENDING,
                        or_(Refund.claimed_until.is_(None), Refund.claimed_until < utcnow()),
                    )
                    .limit(50)
                )
            )
        for refund_id in due:
            self.run_refund(refund_id)
        return len(due)

    # Stripe webhooks

    def store_stripe_event(self, event: dict[str, Any]) -> uuid.UUID | None:
        """Keep the verified event; None if this event id was stored before (a redelivery)."""
        with unit_of_work(self.db) as uow:
            existing = uow.session.scalars(
                select(WebhookEvent).where(
                    WebhookEvent.provider == "stripe", WebhookEvent.provider_event_id == str(event["id"])
                )
            ).first()
            if existing is not None:
                return existing.id if existing.processed_at is None else None
            row = WebhookEvent(
                id=uuid.uuid4(),
                provider="stripe",
                provider_event_id=str(event["id"]),
                event_type=str(event.get("type", "")),
                payload=event,
            )
            uow.session.add(row)
            try:
                uow.commit()
            except IntegrityError:
                return None
            return row.id

    def process_stripe_event(self, event_row_id: uuid.UUID) -> None:
        refund_id: uuid.UUID | None = None
        with unit_of_work(self.db) as uow:
            row = uow.session.get(WebhookEvent, event_row_id, with_for_update=True)
            if row is None or row.processed_at is not None:
                return
            refund_id, outcome = self._apply_stripe_event(uow, row.event_type, row.payload)
            row.processed_at = utcnow()
            row.outcome = outcome
            uow.commit()
        if refund_id is not None:
            self.run_refund(refund_id)

    def process_stored_events(self) -> int:
        with unit_of_work(self.db) as uow:
            pending = list(
                uow.session.scalars(
                    select(WebhookEvent.id)
                    .where(WebhookEvent.processed_at.is_(None))
                    .order_by(WebhookEvent.received_at)
                    .limit(100)
                )
            )
        for event_row_id in pending:
            self.process_stripe_event(event_row_id)
        return len(pending)

    def _apply_stripe_event(
        self, uow: UnitOfWork, event_type: str, event: dict[str, Any]
    ) -> tuple[uuid.UUID | None, str]:
        obj = (event.get("data") or {}).get("object") or {}
        if event_type == "charge.refunded":
            return None, self._apply_charge_refunded(uow, obj)
        if not event_type.startswith("checkout.session."):
            return None, "ignored: not a type the shop handles"
        payment = self._payment_of_session(uow.session, obj)
        if payment is None:
            return None, "ignored: no payment for this checkout session"
        amount = from_minor_units(int(obj.get("amount_total") or 0))
        currency = str(obj.get("currency") or "")
        transaction = obj.get("payment_intent")
        transaction_id = transaction.get("id") if isinstance(transaction, dict) else transaction
        if event_type in ("checkout.session.completed", "checkout.session.async_payment_succeeded"):
            if obj.get("payment_status") != "paid":
                return None, f"not paid yet (payment_status {obj.get('payment_status')})"
            refund_id = self.record_success(
                uow, payment, transaction_id=transaction_id, amount=amount, currency=currency
            )
            return refund_id, f"payment {payment.status}"
        if event_type == "checkout.session.async_payment_failed":
            self.record_failure(uow, payment, PaymentStatus.FAILED, "the payment failed at Stripe")
            return None, f"payment {payment.status}"
        if event_type == "checkout.session.expired":
            if payment.status == PaymentStatus.INITIATED:
                self.record_failure(uow, payment, PaymentStatus.CANCELLED, "the checkout session expired")
            return None, f"payment {payment.status}"
        return None, "ignored: checkout event type not handled"

    def _payment_of_session(self, session: Session, obj: dict[str, Any]) -> Payment | None:
        metadata = obj.get("metadata") or {}
        payment: Payment | None = None
        try:
            payment_id = uuid.UUID(str(metadata.get("payment_id")))
        except ValueError:
            payment_id = None
        if payment_id is not None:
            payment = self._lock_payment(session, payment_id)
        if payment is None and obj.get("id"):
            found = session.scalars(
                select(Payment.id).where(Payment.provider == "stripe", Payment.provider_reference == str(obj["id"]))
            ).first()
            payment = self._lock_payment(session, found) if found else None
        if payment is None or payment.provider != "stripe":
            return None
        if payment.provider_reference and obj.get("id") and payment.provider_reference != obj["id"]:
            return None
        return payment

    def _lock_payment(self, session: Session, payment_id: uuid.UUID) -> Payment | None:
        """Lock the order's row, then the payment's: every path takes them in this order (no deadlock)."""
        order_id = session.scalar(select(Payment.order_id).where(Payment.id == payment_id))
        if order_id is None:
            return None
        session.get(PayableOrder, order_id, with_for_update=True)
        return session.get(Payment, payment_id, with_for_update=True, populate_existing=True)

    def _apply_charge_refunded(self, uow: UnitOfWork, charge: dict[str, Any]) -> str:
        intent = charge.get("payment_intent")
        if not intent:
            return "ignored: no payment intent"
        found = uow.session.scalars(
            select(Payment.id).where(Payment.provider == "stripe", Payment.provider_transaction_id == str(intent))
        ).first()
        payment = self._lock_payment(uow.session, found) if found else None
        if payment is None:
            return "ignored: no payment for this charge"
        if payment.status != PaymentStatus.SUCCEEDED:
            # Our own refund (ledger row pending or done) records itself when Stripe answers.
            return f"payment already {payment.status}"
        refunded = from_minor_units(int(charge.get("amount_refunded") or 0))
        if refunded < money(payment.amount):
            return "partial refund at Stripe noted"
        uow.session.add(
            Refund(
                id=uuid.uuid4(),
                payment_id=payment.id,
                idempotency_key=FULL_REFUND_KEY,
                amount=payment.amount,
                currency=payment.currency,
                reason="refunded at Stripe",
                status=RefundStatus.SUCCEEDED,
                attempts=0,
            )
        )
        self._mark_refunded(uow, payment, payment.amount, "refunded at Stripe")
        return "refunded at Stripe"

    # bKash callback

    def bkash_callback(self, payment_reference: str, status: str) -> Payment:
        with unit_of_work(self.db) as uow:
            payment = uow.session.scalars(
                select(Payment).where(Payment.provider == "bkash", Payment.provider_reference == payment_reference)
            ).first()
        if payment is None:
            raise NotFound("no such bKash payment")
        if status == "success":
            self._execute_once(payment.id)
        elif payment.status == PaymentStatus.INITIATED:
            with for_payment(payment.id):
                outcome, answer = self._query(payment_reference)
            fallback = PaymentStatus.CANCELLED if status == "cancel" else PaymentStatus.FAILED
            self._settle_bkash(payment.id, outcome, answer, pending_means=fallback)
        with unit_of_work(self.db) as uow:
            current = uow.session.get(Payment, payment.id)
            assert current is not None
            return current

    def _execute_once(self, payment_id: uuid.UUID) -> None:
        # The transition initiated → executing is the guard: a reloaded callback finds it taken and
        # only reads the state, so Execute is called at most once per payment.
        with unit_of_work(self.db) as uow:
            claimed = uow.session.execute(  # type: ignore[attr-defined]
                update(Payment)
                .where(Payment.id == payment_id, Payment.status == PaymentStatus.INITIATED)
                .values(status=PaymentStatus.EXECUTING, updated_at=utcnow())
            ).rowcount
            uow.commit()
            payment = uow.session.get(Payment, payment_id)
        if not claimed or payment is None or payment.provider_reference is None:
            return
        with for_payment(payment_id):
            try:
                answer = self.bkash.execute(payment.provider_reference)
                outcome = classify_execute(answer)
            except BkashUnavailable:
                answer, outcome = {}, BkashOutcome.UNCLEAR
            if outcome is BkashOutcome.UNCLEAR:
                outcome, answer = self._query(payment.provider_reference)
        self._settle_bkash(payment_id, outcome, answer, pending_means=PaymentStatus.INITIATED)

    def _query(self, payment_reference: str) -> tuple[BkashOutcome, dict[str, Any]]:
        try:
            answer = self.bkash.query(payment_reference)
        except BkashUnavailable:
            return BkashOutcome.UNCLEAR, {}
        return classify_query(answer), answer

    def _settle_bkash(
        self, payment_id: uuid.UUID, outcome: BkashOutcome, answer: dict[str, Any], *, pending_means: PaymentStatus
    ) -> None:
        refund_id: uuid.UUID | None = None
        with unit_of_work(self.db) as uow:
            payment = self._lock_payment(uow.session, payment_id)
            if payment is None:
                return
            if outcome is BkashOutcome.COMPLETED:
                amount = answer.get("amount")
                refund_id = self.record_success(
                    uow,
                    payment,
                    transaction_id=answer.get("trxID"),
                    amount=money(str(amount)) if amount is not None else Decimal("-1"),
                    currency=str(answer.get("currency") or ""),
                )
            elif outcome is BkashOutcome.FAILED:
                _, message = bkash_error(answer)
                self.record_failure(
                    uow, payment, PaymentStatus.FAILED, f"bKash: {message or answer.get('transactionStatus')}"
                )
            elif outcome is BkashOutcome.CANCELLED:
                self.record_failure(uow, payment, PaymentStatus.CANCELLED, "bKash: payment cancelled or expired")
            elif outcome is BkashOutcome.PENDING:
                if pending_means == PaymentStatus.INITIATED:
                    # Not finished at bKash (an early or forged callback): payable again, nothing taken.
                    if payment.status == PaymentStatus.EXECUTING:
                        payment.status = PaymentStatus.INITIATED
                else:
                    reason = (
                        "customer cancelled at bKash"
                        if pending_means == PaymentStatus.CANCELLED
                        else "bKash reported a failure"
                    )
                    self.record_failure(uow, payment, pending_means, reason)
            uow.commit()
        if refund_id is not None:
            self.run_refund(refund_id)

    def settle_stuck_executions(self) -> int:
        """A process that died mid-Execute leaves `executing`: Query decides, as for a timeout."""
        cutoff = utcnow() - timedelta(seconds=self.settings.bkash_stuck_after)
        with unit_of_work(self.db) as uow:
            stuck = [
                (p.id, p.provider_reference)
                for p in uow.session.scalars(select(Payment).where(Payment.status == PaymentStatus.EXECUTING).limit(50))
                if _aware(p.updated_at) < cutoff
            ]
        for payment_id, reference in stuck:
            if reference:
                with for_payment(payment_id):
                    outcome, answer = self._query(reference)
                if outcome is not BkashOutcome.UNCLEAR:
                    self._settle_bkash(payment_id, outcome, answer, pending_means=PaymentStatus.INITIATED)
        return len(stuck)

    def sweep(self) -> None:
        self.process_stored_events()
        self.run_pending_refunds()
        self.settle_stuck_executions()
