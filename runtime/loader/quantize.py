"""`EngineConfig.quantization`: which linear weights run quantized (sgl.kernels.quant) after loading.

  "none"  every weight as loaded (a GGUF dequantized): what the float parity tests use
  "auto"  a GGUF's linears in their stored types where the kernel has them (gguf_quant.SUPPORTED),
          everything else as loaded
  "q8_0", "q4_0"  every linear quantized at load from its loaded float weight (llama.cpp's rules)

A linear's quantized weight replaces its float one (`weight` becomes None); its bias stays.
Under "auto" the output head and token embedding too, where the file stores them in a supported
type (a tied head shares the embedding's blocks): `quantize_vocab`. Norms stay as loaded.
"""

from __future__ import annotations

import logging

import torch
from sgl.kernels.quant import QuantWeight, concat, pack
from torch import nn

from ..config import QUANTIZATIONS
from ..layers.embedding import LMHead, VocabEmbedding
from ..layers.linear import Linear, PackedLinear

logger = logging.getLogger("sgl.runtime")


def quantize_q8_0(w: torch.Tensor) -> QuantWeight:
    """(N, K) float -> Q8_0: per 32, d = amax / 127, q = round(w / d)."""
    n, k = w.shape
    blocks = w.float().reshape(n, k // 32, 32)
    d = blocks.abs().amax(-1) / 127.0
    inv = torch.where(d != 0, 1.0 / d, torch.zeros_like(d))
    q = torch.round(blocks * inv.unsqueeze(-1)).clamp(-127, 127).to(torch.int32).reshape(n, k)
    return pack(q, d.repeat_interleave(2, 1), None, source="q8_0")


def quantize_q4_0(w: torch.Tensor) -> QuantWeight:
    """(N, K) float -> Q4_0: per 32, d = (the signed value of largest magnitude) / -8,
    q = clamp(round(w / d) + 8, 0, 15), w = d (q - 8)."""
    n, k = w.shape
    blocks = w.float().reshape(n, k // 32, 32)
    extreme = blocks.gather(-1, blocks.abs().argmax(-1, keepdim=True)).squeeze(-1)
    d = extreme / -8.0
    inv = torch.where(d != 0, 1.0 / d, torch.zeros_like(d))
    q = (torch.round(blocks * inv.unsqueeze(-1)) + 8).clamp(0, 15).to(torch.int32).reshape(n, k)
    d16 = d.repeat_interleave(2, 1)
    return pack(q, d16, -8.0 * d16, source="q4_0")


def _checkpoint_names(model: nn.Module, name: str, linear: Linear) -> list[str]:
    """The checkpoint weight names a linear loads from, in its row order (one per shard)."""
    if not isinstance(linear, PackedLinear):
        return [f"{name}.weight"]
    packed: dict[str, tuple[str, str | int]] = getattr(model, "packed_modules", {})
    head, _, part = name.rpartition(".")
    names = []
    for shard in linear.shard_offsets:
        ckpt = [c for c, (p, s) in packed.items() if p == part and s == shard]
        if len(ckpt) != 1:
            return []  # a fused checkpoint tensor (shard None) or an unknown packing: keep it float
        names.append(f"{head}.{ckpt[0]}.weight")
    return names


def quantize_model(model: nn.Module, quantization: str, stored: dict[str, QuantWeight] | None) -> int:
    """Sets `qweight` on the model's linears per `quantization` (see the module doc); `stored`:
    a GGUF's quantized tensors by checkpoint name (for "auto"). The number of linears quantized."""
    if quantization not in QUANTIZATIONS:
        raise ValueError(f"quantization={quantization!r}: use one of {', '.join(QUANTIZATIONS)}")
    if quantization == "none" or (quantization == "auto" and not stored):
        return 0
    done = 0
    for name, module in model.named_modules():
        if not isinstance(module, Linear) or module.weight is None or module.in_features % 32:
            continue
        if quantization == "auto":
            names = _checkpoint_names(model, name, module)
            if not names or any(n not in stored for n in names):
                continue
            qweight = concat([stored[n] for n in names]) if len(names) > 1 else stored[names[0]]
        else:
            quantizer = quantize_q8_0 if quantization == "q8_0" else quantize_q4_0
            qweight = quantizer(module.weight.data)
        if qweight.shape != (module.out_features, module.in_features):
            raise ValueError(f"{name}: quantized weight {qweight.shape} does not match "
                             f"({module.out_features}, {module.in_features})")
        module.set_qweight(qweight)
        done += 1
    if quantization == "auto":
        done += quantize_vocab(model, stored)
    logger.info("quantization=%s: %d linear layers quantized", quantization, done)
    return done


def quantize_vocab(model: nn.Module, stored: dict[str, QuantWeight]) -> int:
    """The head (`lm_head`: "lm_head.weight", or tied: "model.embed_tokens.weight") and the token
    embedding on their stored blocks; how many of the two. A tied pair shares one QuantWeight.
    Subclasses (vocab-parallel tables) stay float."""
    head = getattr(model, "lm_head", None)
    emb = getattr(getattr(model, "model", None), "embed_tokens", None)
    head = head if type(head) is LMHead and head.weight is not None else None
    emb = emb if type(emb) is VocabEmbedding and emb.weight is not None else None
    tied = head is not None and emb is not None and head.weight is emb.weight
    targets = [(emb, "model.embed_tokens.weight"), (head, "model.embed_tokens.weight" if tied else "lm_head.weight")]
    done = 0
    for module, name in targets:
        w = stored.get(name)
        if module is None or w is None:
            continue
        if w.shape != tuple(module.weight.shape):  # a tied head still holds the table until set
            raise ValueError(f"{name}: quantized weight {w.shape} does not match {tuple(module.weight.shape)}")
        module.set_qweight(w)
        done += 1
    return done


def weight_bytes(model: nn.Module) -> dict[str, int]:
    """Bytes of the model's weights: quantized linears, and everything held as float tensors."""
    quant = sum(w.nbytes() for w in {id(m.qweight): m.qweight for m in model.modules()
                                     if getattr(m, "qweight", None) is not None}.values())
    seen: set[int] = set()
    floats = 0
    for p in model.parameters():
        if p.data_ptr() not in seen:
            seen.add(p.data_ptr())
            floats += p.numel() * p.element_size()
    return {"quantized": quant, "float": floats, "total": quant + floats}
