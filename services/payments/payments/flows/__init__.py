"""Payments use cases, one module per flow; each a function of a unit of work or of the context."""
