"""Signed webhook delivery: Stripe's retry schedule, a cap on concurrent deliveries, fault modes.

Every delivery goes through one pooled HTTP client whose connection limit equals the cap, and
each attempt waits for a free slot before it starts its clock, so a slow endpoint makes
deliveries queue instead of timing out in the pool and being retried in a tight loop. An attempt
that fails (an error status, a refused connection, a timeout) waits for the next step of the
schedule; the schedule's position and the next attempt's time are stored with the event, so a
restarted sandbox carries on where it was.

Fault modes (`POST /_control/webhooks`) apply to the events made while they are set: `drop`
records events without sending them, `duplicate` sends each one twice, `reverse` holds them for a
moment and then sends the batch newest first.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import hmac
import logging
import time
from enum import StrEnum

import aiohttp

from sandbox.background import BackgroundLoop
from sandbox.stripe_sandbox.account import StripeAccount
from sandbox.stripe_sandbox.events import PENDING, Delivery, DeliveryAttempt, EventRecord
from sandbox.stripe_sandbox.settings import StripeSandboxSettings

log = logging.getLogger(__name__)


class WebhookMode(StrEnum):
    DELIVER = "deliver"
    DROP = "drop"
    DUPLICATE = "duplicate"
    REVERSE = "reverse"


def sign(body: str, secret: str, timestamp: int) -> str:
    """The `Stripe-Signature` header: HMAC-SHA256 over `"<t>.<body>"` keyed with the whsec secret."""
    digest = hmac.new(secret.encode(), f"{timestamp}.{body}".encode(), hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


class WebhookDispatcher:
    def __init__(self, settings: StripeSandboxSettings, account: StripeAccount, background: BackgroundLoop) -> None:
        self._settings = settings
        self._account = account
        self._background = background
        self._subscribed = frozenset(settings.webhook_events)
        self.mode = WebhookMode.DELIVER
        self._slots: asyncio.Semaphore | None = None
        self._client: aiohttp.ClientSession | None = None
        self._held: list[EventRecord] = []
        self._tasks: set[asyncio.Task[None]] = set()
        background.on_stop(self._close_client)

    # Decided when the event is made, inside the change that stores it.

    def initial_delivery(self, event_type: str) -> Delivery | None:
        if "*" not in self._subscribed and event_type not in self._subscribed:
            return None
        if not self._settings.webhook_url:
            return Delivery(status="disabled")
        if self.mode is WebhookMode.DROP:
            return Delivery(status="dropped")
        now = time.time()
        if self.mode is WebhookMode.REVERSE:
            return Delivery(status=PENDING, next_attempt_at=now + self._settings.webhook_reverse_hold, held=True)
        return Delivery(status=PENDING, next_attempt_at=now, copies=2 if self.mode is WebhookMode.DUPLICATE else 1)

    # Called once the event is stored (from any thread).

    def publish(self, record: EventRecord) -> None:
        delivery = record.delivery
        if delivery is None or delivery.status != PENDING:
            return
        self._background.call_soon(self._hold if delivery.held else self._spawn, record)

    def resume(self) -> int:
        """Carry on with the deliveries a previous run left pending (after a short grace: the
        endpoint may be starting up along with this sandbox)."""
        pending = self._account.pending_deliveries()
        earliest = time.time() + self._settings.webhook_resume_delay
        for record in pending:
            assert record.delivery is not None
            record.delivery.held = False
            record.delivery.next_attempt_at = max(record.delivery.next_attempt_at, earliest)
            self._background.call_soon(self._spawn, record)
        return len(pending)

    def redeliver(self, record: EventRecord) -> concurrent.futures.Future[DeliveryAttempt]:
        """One more attempt (like "Resend" in Stripe's dashboard), whatever happened before."""
        return self._background.submit(self._attempt(record, scheduled=False))

    def close(self) -> None:
        """Stop the delivery thread (deliveries not yet due stay pending)."""
        self._background.close()

    # On the background loop.

    def _spawn(self, record: EventRecord) -> None:
        self._track(asyncio.get_running_loop().create_task(self._deliver(record)))

    def _track(self, task: asyncio.Task[None]) -> None:
        self._tasks.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            # The delivery stays pending in the store: a restart resumes it.
            log.error("webhook delivery stopped", exc_info=task.exception())

    def _hold(self, record: EventRecord) -> None:
        if not self._held:
            asyncio.get_running_loop().call_later(self._settings.webhook_reverse_hold, self._release_held)
        self._held.append(record)

    def _release_held(self) -> None:
        # Newest first; among events of the same second, the later made first.
        batch = sorted(reversed(self._held), key=lambda record: record.created, reverse=True)
        self._held = []
        self._track(asyncio.get_running_loop().create_task(self._deliver_in_order(batch)))

    async def _deliver_in_order(self, batch: list[EventRecord]) -> None:
        # One at a time, so they also arrive in this order; a failed one then follows the schedule.
        for record in batch:
            assert record.delivery is not None
            record.delivery.held = False
            if record.delivery.status == PENDING:
                await self._attempt(record, scheduled=True)
            if record.delivery.status == PENDING:
                self._spawn(record)

    async def _deliver(self, record: EventRecord) -> None:
        delivery = record.delivery
        assert delivery is not None
        while delivery.status == PENDING:
            wait = delivery.next_attempt_at - time.time()
            if wait > 0:
                await asyncio.sleep(wait)
                continue  # the schedule may have moved (a redelivery, a reset) while asleep
            await self._attempt(record, scheduled=True)

    async def _attempt(self, record: EventRecord, *, scheduled: bool) -> DeliveryAttempt:
        if self._slots is None:
            self._slots = asyncio.Semaphore(self._settings.webhook_max_concurrent)
        async with self._slots:
            attempt = await self._post(record)
        delivery = record.delivery
        assert delivery is not None
        with self._account.lock:
            delivery.attempts.append(attempt)
            if scheduled:
                self._advance(delivery, attempt)
            elif attempt.succeeded:
                delivery.status = "delivered"
            elif delivery.status != PENDING and delivery.status != "delivered":
                delivery.status = "failed"
            self._account.save_delivery(record)
        if not attempt.succeeded:
            log.info("webhook %s (%s) failed: %s", record.id, record.type, attempt.error or attempt.status_code)
        return attempt

    def _advance(self, delivery: Delivery, attempt: DeliveryAttempt) -> None:
        if delivery.status != PENDING:
            return  # reset, or delivered by a redelivery meanwhile
        delays = self._settings.webhook_retry_delays
        if attempt.succeeded:
            delivery.copies -= 1
            delivery.failures = 0
            if delivery.copies <= 0:
                delivery.status = "delivered"
            else:
                delivery.next_attempt_at = time.time()
        elif delivery.failures >= len(delays):
            delivery.status = "failed"
        else:
            delivery.next_attempt_at = time.time() + delays[delivery.failures]
            delivery.failures += 1

    async def _post(self, record: EventRecord) -> DeliveryAttempt:
        url = self._settings.webhook_url
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
            "Stripe-Signature": sign(record.body, self._settings.webhook_secret, int(time.time())),
        }
        started = time.monotonic()
        status_code: int | None = None
        error: str | None = None
        try:
            post = self._session().post(url, data=record.body.encode(), headers=headers, allow_redirects=False)
            async with post as response:
                status_code = response.status
                await response.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            error = f"{type(exc).__name__}: {exc}"
        duration_ms = int((time.monotonic() - started) * 1000)
        return DeliveryAttempt(at=time.time(), url=url, status_code=status_code, error=error, duration_ms=duration_ms)

    def _session(self) -> aiohttp.ClientSession:
        if self._client is None or self._client.closed:
            self._client = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._settings.webhook_max_concurrent),
                timeout=aiohttp.ClientTimeout(total=self._settings.webhook_timeout),
                # Stripe sends no cookies and follows no redirects: a 3xx is a failed delivery.
                cookie_jar=aiohttp.DummyCookieJar(),
            )
        return self._client

    async def _close_client(self) -> None:
        # The next loop (after close(), if the sandbox is used again) gets its own client and slots.
        self._slots = None
        if self._client is not None:
            await self._client.close()
            self._client = None
