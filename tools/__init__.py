"""Operator and developer tools: the distributed-mode supervisor and the benchmark."""
