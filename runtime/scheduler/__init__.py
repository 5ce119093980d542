"""Continuous batching: requests, KV bookkeeping, queue policies and the scheduler loop."""
