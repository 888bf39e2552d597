"""Payment providers: the interface, its Stripe and bKash adapters, and the registry by name."""
