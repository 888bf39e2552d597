"""The all-in-one mode: gateway, services and provider sandboxes in one process on one port."""
