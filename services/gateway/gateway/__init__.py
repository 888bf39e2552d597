"""The API gateway: one entry point for every client."""
