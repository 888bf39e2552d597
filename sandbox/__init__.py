"""Local fakes of the payment providers the shop talks to.

`sandbox.stripe_sandbox` speaks the Stripe API (Checkout Sessions, refunds, events, signed webhooks)
and `sandbox.bkash_sandbox` the bKash tokenized checkout API (v1.2.0-beta). Both keep their state in
memory, or under `SHOP_SANDBOX_STATE_DIR` when it is set, and can run standalone
(`python -m sandbox.stripe_sandbox`) or be mounted in another app.
"""
