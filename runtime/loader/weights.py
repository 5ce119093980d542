"""The generic weight loader: a model declares how checkpoint names map to its parameters
(`packed_modules`, `ignored_weights`, optional `renamed_weights`, `stacked_weights` and a
`transform_weights` hook); this does the rest and fails loudly on a missing or unexpected tensor.

- renamed_weights: [(pattern, replacement)], re.sub on every name, in order.
- stacked_weights: [(pattern with an `expert` group, replacement, kind)]: a per-expert tensor
  whose name matches loads into shard (int(expert), kind) of the parameter named by replacing
  the match (MoE experts: layers/moe.py `expert_weight_rules`).
- transform_weights(weights) -> weights: a model's own conversion of whole tensors before
  naming (layouts of stacked experts, quantized blocks dequantized: GPT-OSS's MXFP4).

A weight may be a lazy safetensors slice; a parameter with `tp_narrow` (a tensor-parallel
shard: distributed/tp_transform.py) reads only its part of it, any other reads it whole."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from ..layers.linear import default_weight_loader


def load_weights(model: nn.Module, weights: Iterable[tuple[str, Any]]) -> None:
    params = dict(model.named_parameters())  # tied parameters appear once, under their first name
    packed: dict[str, tuple[str, str | int]] = getattr(model, "packed_modules", {})
    ignored = [re.compile(p) for p in getattr(model, "ignored_weights", ())]
    renamed = [(re.compile(a), b) for a, b in getattr(model, "renamed_weights", ())]
    stacked = [(re.compile(a), b, kind) for a, b, kind in getattr(model, "stacked_weights", ())]
    transform = getattr(model, "transform_weights", None)
    if transform is not None:  # it converts whole tensors: lazy slices are read first
        weights = transform((n, t if isinstance(t, torch.Tensor) else t[:]) for n, t in weights)
    tied = bool(getattr(getattr(model, "config", None), "tie_word_embeddings", False))
    loaded: set[tuple[str, str | int | None]] = set()
    for name, tensor in weights:
        if any(p.search(name) for p in ignored):
            continue
        for pattern, repl in renamed:
            name = pattern.sub(repl, name)
        target, shard = name, None
        for pattern, repl, kind in stacked:
            m = pattern.search(name)
            if m is not None:
                target, shard = name[:m.start()] + repl + name[m.end():], (int(m["expert"]), kind)
                break
        for ckpt_part, (param_part, shard_id) in packed.items():
            if shard is None and f".{ckpt_part}." in name:
                target, shard = name.replace(f".{ckpt_part}.", f".{param_part}."), shard_id
                break
        if target not in params:
            if tied and target.startswith("lm_head."):
                continue  # a tied checkpoint may still carry the head; the embedding wins
            raise ValueError(f"checkpoint tensor {name!r} has no parameter in {type(model).__name__} "
                             f"(looked for {target!r})")
        param = params[target]
        loader = getattr(param, "weight_loader", None)
        narrow = getattr(param, "tp_narrow", None)
        if narrow is not None:
            tensor = narrow(tensor, shard)
        elif not isinstance(tensor, torch.Tensor):
            tensor = tensor[:]  # a lazy slice, read whole
        tensor = tensor.to(param.dtype)
        if loader is not None:
            loader(param, tensor, shard)
        elif shard is not None:
            raise ValueError(f"{target!r} is not a packed parameter but {name!r} maps to shard {shard!r}")
        else:
            try:
                default_weight_loader(param, tensor)
            except ValueError as e:
                raise ValueError(f"{name!r}: {e}") from None
        loaded.add((target, shard))

    missing = []
    for pname, param in params.items():
        shards = getattr(param, "shards", None)  # set on packed parameters
        done = (pname, None) in loaded or (shards is not None and all((pname, s) in loaded for s in shards))
        if not done:
            missing.append(pname)
    if missing:
        raise ValueError(f"checkpoint is missing {len(missing)} tensors for {type(model).__name__}: "
                         f"{', '.join(missing[:8])}{' ...' if len(missing) > 8 else ''}")
