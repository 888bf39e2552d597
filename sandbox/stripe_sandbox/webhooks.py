"""Signed webhook delivery with retries, on a background event loop of its own.

Deliveries run on a dedicated thread's loop, started on first use, rather than on the serving
loop: a mounted app's lifespan never runs, and a test client may close its loop right after a
request, which would silently cancel a pending retry. The same loop runs the sweeper that
expires sessions past their `expires_at`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import hmac
import logging
import threading
import time

import httpx

from sandbox.stripe_sandbox.objects import DeliveryAttempt, EventRecord
from sandbox.stripe_sandbox.settings import StripeSandboxSettings
from sandbox.stripe_sandbox.state import StripeAccount

log = logging.getLogger(__name__)


def sign(body: str, secret: str, timestamp: int) -> str:
    """The `Stripe-Signature` header: HMAC-SHA256 over `"<t>.<body>"` keyed with the whsec secret."""
    digest = hmac.new(secret.encode(), f"{timestamp}.{body}".encode(), hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


class WebhookDispatcher:
    def __init__(self, settings: StripeSandboxSettings, account: StripeAccount) -> None:
        self._settings = settings
        self._account = account
        self._guard = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._client: httpx.AsyncClient | None = None

    def start(self) -> asyncio.AbstractEventLoop:
        with self._guard:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                self._thread = threading.Thread(
                    target=self._run, args=(loop,), name="stripe-sandbox-webhooks", daemon=True
                )
                self._thread.start()
                self._loop = loop
            return self._loop

    def _run(self, loop: asyncio.AbstractEventLoop) -> None:
        asyncio.set_event_loop(loop)
        sweeper = loop.create_task(self._sweep_expired_sessions())
        try:
            loop.run_forever()
        finally:
            sweeper.cancel()
            loop.run_until_complete(asyncio.gather(sweeper, return_exceptions=True))
            if self._client is not None:
                loop.run_until_complete(self._client.aclose())
            loop.close()

    def close(self) -> None:
        """Stop the delivery thread (pending retries are dropped)."""
        with self._guard:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if loop is not None and thread is not None:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=5)

    def publish(self, record: EventRecord) -> None:
        if not self._settings.webhook_url:
            self._account.mark_delivery(record, "disabled")
            return
        asyncio.run_coroutine_threadsafe(self._deliver_with_retries(record), self.start())

    def redeliver(self, record: EventRecord) -> concurrent.futures.Future[DeliveryAttempt]:
        """One more attempt (like "Resend" in Stripe's dashboard), whatever happened before."""
        return asyncio.run_coroutine_threadsafe(self._attempt(record, final=True), self.start())

    async def _deliver_with_retries(self, record: EventRecord) -> None:
        delays = list(self._settings.webhook_retry_delays)
        for index, delay in enumerate([0.0, *delays]):
            if delay:
                await asyncio.sleep(delay)
            if record.delivery_status == "cancelled":
                return
            attempt = await self._attempt(record, final=index == len(delays))
            if attempt.succeeded:
                return

    async def _attempt(self, record: EventRecord, *, final: bool) -> DeliveryAttempt:
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self._settings.webhook_timeout)
        url = self._settings.webhook_url
        timestamp = int(time.time())
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
            "Stripe-Signature": sign(record.body, self._settings.webhook_secret, timestamp),
        }
        started = time.monotonic()
        status_code: int | None = None
        error: str | None = None
        try:
            response = await self._client.post(url, content=record.body.encode(), headers=headers)
            status_code = response.status_code
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"
        attempt = DeliveryAttempt(
            at=time.time(),
            url=url,
            status_code=status_code,
            error=error,
            duration_ms=int((time.monotonic() - started) * 1000),
        )
        self._account.record_attempt(record, attempt, final=final)
        if not attempt.succeeded:
            log.info("webhook %s (%s) to %s failed: %s", record.id, record.type, url, error or status_code)
        return attempt

    async def _sweep_expired_sessions(self) -> None:
        while True:
            await asyncio.sleep(self._settings.expiry_sweep_interval)
            try:
                self._account.expire_due_sessions()
            except Exception:  # the sweeper must outlive any one bad pass
                log.exception("expiring sessions failed")
