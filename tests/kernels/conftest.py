"""Without CUDA the Triton kernels run under Triton's interpreter on CPU tensors. NOTE: the
interpreter is chosen when a kernel is decorated, so the variable is set here, before any test
module imports sgl.kernels.triton; with CUDA the same tests run the compiled kernels."""

from __future__ import annotations

import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
