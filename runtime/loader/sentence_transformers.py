"""sentence-transformers' pipeline description in a model folder: `modules.json` lists the
modules (Transformer, Pooling, Normalize, ...), `<path>/config.json` configures each. We serve
the Transformer -> Pooling [-> Normalize] pipelines and refuse the rest with the module named."""

from __future__ import annotations

import json
import os
from typing import Any

from ..layers.pooler import Pooler

ST = "sentence_transformers.models."
# 1_Pooling/config.json's boolean modes -> our pooler kinds
POOLING_MODES = {"pooling_mode_cls_token": "cls", "pooling_mode_mean_tokens": "mean",
                 "pooling_mode_lasttoken": "last"}
UNSUPPORTED_MODES = ("pooling_mode_max_tokens", "pooling_mode_mean_sqrt_len_tokens",
                     "pooling_mode_weightedmean_tokens")


def read_pooler(folder: str) -> Pooler | None:
    """The Pooler that `folder`'s modules.json describes; None when the folder has none."""
    path = os.path.join(folder, "modules.json")
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        modules: list[dict[str, Any]] = json.load(f)
    kind, normalize = None, False
    for module in modules:
        name = module.get("type", "").removeprefix(ST)
        if name == "Transformer":
            continue
        if name == "Pooling":
            kind = _pooling_kind(os.path.join(folder, module.get("path", ""), "config.json"))
        elif name == "Normalize":
            normalize = True
        else:
            raise ValueError(f"{path}: module {module.get('type')!r} is not supported; sgl serves "
                             "Transformer -> Pooling [-> Normalize] pipelines")
    if kind is None:
        raise ValueError(f"{path} has no sentence_transformers.models.Pooling module: add one "
                         "(e.g. 1_Pooling/config.json with pooling_mode_mean_tokens)")
    return Pooler(kind, normalize)


def read_max_seq_length(folder: str) -> int | None:
    """sentence_bert_config.json's max_seq_length (the longest input sentence-transformers
    feeds the model, past which it truncates); None when the folder has none."""
    path = os.path.join(folder, "sentence_bert_config.json")
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        value = json.load(f).get("max_seq_length")
    if value is not None and (not isinstance(value, int) or value < 1):
        raise ValueError(f"{path}: max_seq_length={value!r} must be a positive integer")
    return value


def _pooling_kind(path: str) -> str:
    with open(path) as f:
        config: dict[str, Any] = json.load(f)
    if isinstance(config.get("pooling_mode"), str):  # the single-string spelling
        mode = config["pooling_mode"]
        kinds = {"cls": "cls", "mean": "mean", "lasttoken": "last"}
        if mode not in kinds:
            raise ValueError(f"{path}: pooling_mode={mode!r} is not supported; use one of {sorted(kinds)}")
        return kinds[mode]
    bad = [m for m in UNSUPPORTED_MODES if config.get(m)]
    chosen = [kind for key, kind in POOLING_MODES.items() if config.get(key)]
    if bad or len(chosen) != 1:
        raise ValueError(f"{path}: set exactly one of {', '.join(POOLING_MODES)} (got {chosen + bad}); "
                         "max, mean_sqrt_len and weightedmean pooling are not supported")
    return chosen[0]
