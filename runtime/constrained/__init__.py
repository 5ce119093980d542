"""Constrained decoding: regex, JSON schema, choices."""
