"""Triton kernels, each beside a plain-torch reference implementation of the same function."""
