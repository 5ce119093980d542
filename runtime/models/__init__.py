"""Model registry: `config.architectures[0]` -> model class, imported lazily."""

from __future__ import annotations

import importlib

from torch import nn

# architecture name -> (module in runtime/models, class name, example hub id)
REGISTRY: dict[str, tuple[str, str, str]] = {
    "LlamaForCausalLM": ("llama", "LlamaForCausalLM", "meta-llama/Llama-3.1-8B-Instruct"),
}


def get_model_class(architecture: str) -> type[nn.Module]:
    if architecture not in REGISTRY:
        raise ValueError(f"architecture {architecture!r} is not supported; supported: "
                         f"{', '.join(sorted(REGISTRY))}")
    module, name, _ = REGISTRY[architecture]
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
