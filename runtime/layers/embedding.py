"""Token embedding and LM head.

Under quantization="auto" a GGUF's token_embd / output blocks stay quantized (loader/quantize.py,
`set_qweight`): the head runs the integer kernel (sgl.kernels.quant) and the embedding reads the
rows it looks up dequantized from the same blocks in float32, then rounded to the activation
dtype; that is exactly what quantization="none" stores (its weight is that dequantization
rounded once), with no float copy of a (vocab, hidden) table (Gemma 3's is 335 MB of bf16)."""

from __future__ import annotations

import torch
from sgl.kernels.cpu.isa import Level, isa
from sgl.kernels.linear import linear_applies, linear_bf16
from sgl.kernels.quant import QuantWeight, dequantize_rows
from torch import nn
from torch.nn import functional as F

from ..device_caps import emulated_bf16
from .linear import BF16_NATIVE_MAX_ROWS, forward_quant, linear


class VocabEmbedding(nn.Module):
    """(tokens,) ids -> (tokens, hidden). `scale` multiplies the output (Gemma: sqrt(hidden))."""

    def __init__(self, vocab_size: int, hidden: int, scale: float | None = None) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(vocab_size, hidden), requires_grad=False)
        self.scale = scale
        self.qweight: QuantWeight | None = None  # set_qweight: rows dequantized on lookup, `weight` None
        self.dtype = self.weight.dtype

    def set_qweight(self, qweight: QuantWeight) -> None:
        """Look rows up in a quantized table from now on; the float one is dropped."""
        self.qweight, self.dtype = qweight, self.weight.dtype
        del self.weight
        self.weight = None

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        if self.qweight is None:
            x = F.embedding(ids, self.weight)
        else:  # (tokens,) rows of the blocks, w = d q + m in float32, rounded once
            x = dequantize_rows(self.qweight, ids.reshape(-1)).to(self.dtype)
            x = x.view(*ids.shape, -1)
        if self.scale is not None:
            # transformers multiplies by the scale cast to the activation dtype
            x = x * torch.tensor(self.scale, dtype=x.dtype)
        return x


class LMHead(nn.Module):
    """hidden -> vocab logits; shares the embedding weight when tied."""

    def __init__(self, vocab_size: int, hidden: int, bias: bool = False) -> None:
        super().__init__()
        self.vocab_size = vocab_size  # the logits' width (a vocab-parallel head holds a slice of the rows)
        self.weight = nn.Parameter(torch.empty(vocab_size, hidden), requires_grad=False)
        self.bias = nn.Parameter(torch.empty(vocab_size), requires_grad=False) if bias else None
        self._wide: torch.Tensor | None = None  # float32 copy of weight, made on first use (after loading)
        self.qweight: QuantWeight | None = None  # set_qweight: the integer kernel, `weight` None

    def set_qweight(self, qweight: QuantWeight) -> None:
        """Run on a quantized weight from now on (a tied head: the embedding's); the float one is
        dropped."""
        self.qweight = qweight
        del self.weight
        self.weight = None

    def forward(self, x: torch.Tensor, out_dtype: torch.dtype | None = None) -> torch.Tensor:
        """x (rows, hidden) -> (rows, vocab) logits in out_dtype (default x's). A quantized head
        writes float32 logits directly; the others compute in x's dtype and convert."""
        if self.qweight is not None:
            return forward_quant(x, self.qweight, self.bias, out_dtype)
        return self._dense(x).to(out_dtype or x.dtype)

    def _dense(self, x: torch.Tensor) -> torch.Tensor:
        """The product with the float weight (bf16 or float32), per CPU level."""
        if isa().level == Level.AVX2 and linear_applies(x, self.weight, capped=False):
            # AVX2: every row count through the kernel, each row alone, so a token's logits are
            # the same decoded or in a rowwise extend of any size (the fused stack's identity);
            # past 16 rows it is compute-bound, about as fast as a float32 product of the head
            return linear_bf16(x, self.weight, self.bias)
        if x.shape[0] > BF16_NATIVE_MAX_ROWS and emulated_bf16(self.weight):
            # The head is the largest matrix (vocab x hidden) and batched decode multiplies it
            # every step: widen it once, not per step (costs a float32 copy of the head).
            if self._wide is None or self._wide.shape != self.weight.shape:
                self._wide = self.weight.float()
            bias = None if self.bias is None else self.bias.float()
            return F.linear(x.float(), self._wide, bias).to(x.dtype)
        return linear(x, self.weight, self.bias)
