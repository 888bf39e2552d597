"""The runtime every Shop service shares: settings, DB and unit of work, outbox, inbox, bus, auth, errors."""
