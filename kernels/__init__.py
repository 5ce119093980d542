"""Kernels, each beside a plain-torch reference implementation of the same function: C kernels
for the CPU in `cpu/` (wrapped by `linear`, `norm`, `rope`, `activation`, `attention`), built on
first use; Triton kernels for GPUs."""
