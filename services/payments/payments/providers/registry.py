"""The providers payments can use, by name: the only place a provider's name picks an adapter."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from payments.providers.base import PaymentProvider, RedirectProvider, WebhookProvider
from shopkit.problems import Unprocessable


@dataclass(frozen=True)
class ProviderRegistry:
    """Stripe and bKash. The provider-specific flows (Stripe's webhooks, bKash's callback) take their
    adapter from its attribute; everything else looks one up by the name stored on a payment."""

    stripe: WebhookProvider
    bkash: RedirectProvider

    def __iter__(self) -> Iterator[PaymentProvider]:
        return iter((self.stripe, self.bkash))

    def get(self, name: str) -> PaymentProvider:
        for provider in self:
            if provider.name == name:
                return provider
        raise Unprocessable(f"unknown payment provider {name!r}")

    def known_secrets(self) -> tuple[str, ...]:
        return tuple(secret for provider in self for secret in provider.known_secrets())

    def close(self) -> None:
        for provider in self:
            provider.close()
