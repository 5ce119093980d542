"""Weights of a local Hugging Face folder: sharded or single safetensors (or `.bin` loaded with
`weights_only=True`; never unrestricted pickle)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

import torch
from safetensors import safe_open


def weight_files(folder: str) -> list[str]:
    index = os.path.join(folder, "model.safetensors.index.json")
    if os.path.exists(index):
        with open(index) as f:
            names = sorted(set(json.load(f)["weight_map"].values()))
        return [os.path.join(folder, n) for n in names]
    files = sorted(f for f in os.listdir(folder) if f.endswith(".safetensors"))
    if not files:
        files = sorted(f for f in os.listdir(folder) if f.endswith(".bin") and "training_args" not in f)
    if not files:
        raise FileNotFoundError(f"no *.safetensors or *.bin weights in {folder!r}")
    return [os.path.join(folder, f) for f in files]


def iterate_weights(folder: str, progress: bool = False, lazy: bool = False) -> Iterator[tuple[str, Any]]:
    """(checkpoint name, tensor) per weight; lazy=True yields safetensors slices instead, which
    read from disk only the part indexed (a tensor-parallel rank reads its shards only)."""
    files = weight_files(folder)
    if progress and len(files) > 1:
        from tqdm import tqdm

        files = tqdm(files, desc="Loading checkpoint shards")
    for path in files:
        if path.endswith(".safetensors"):
            with safe_open(path, framework="pt") as f:
                for name in f.keys():
                    yield name, f.get_slice(name) if lazy else f.get_tensor(name)
        else:
            yield from torch.load(path, map_location="cpu", weights_only=True).items()
