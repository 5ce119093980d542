"""GGUF checkpoints: tensors dequantized and renamed to Hugging Face names.

Converting takes a while (transformers' GGUF config/tokenizer conversion, numpy dequantization),
so it happens once: the result is saved as an ordinary Hugging Face folder (config.json,
tokenizer files, float32 model.safetensors) in a cache keyed by the file's path, size and mtime,
and later loads read that folder.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
from collections.abc import Iterator

import numpy as np
import torch
from safetensors.torch import save_file

# llama.cpp tensor names -> Hugging Face names (Llama family layout)
_LAYER_NAMES = {
    "attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj", "attn_norm": "input_layernorm",
    "ffn_norm": "post_attention_layernorm", "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj", "attn_q_norm": "self_attn.q_norm", "attn_k_norm": "self_attn.k_norm",
}
_GLOBAL_NAMES = {"token_embd": "model.embed_tokens", "output_norm": "model.norm", "output": "lm_head"}
# Gemma 2/3 layers norm four times: llama.cpp's ffn_norm is their pre-feedforward norm
_SANDWICH_NAMES = {**_LAYER_NAMES, "ffn_norm": "pre_feedforward_layernorm",
                   "post_attention_norm": "post_attention_layernorm", "post_ffw_norm": "post_feedforward_layernorm"}
_SANDWICH_ARCHS = {"gemma2", "gemma3"}
# architectures whose converter permuted q/k rows for llama.cpp's rope layout
_PERMUTED_QK = {"llama", "mistral", "granite"}
# architectures whose converter stored RMS norm weights as 1 + w (Gemma's x * (1 + w) norms)
_NORM_PLUS_ONE = {"gemma", "gemma2", "gemma3"}


def _hf_name(name: str, arch: str = "llama") -> str:
    base, _, kind = name.rpartition(".")
    m = re.fullmatch(r"blk\.(\d+)\.(\w+)", base)
    names = _SANDWICH_NAMES if arch in _SANDWICH_ARCHS else _LAYER_NAMES
    if m and m.group(2) in names:
        return f"model.layers.{m.group(1)}.{names[m.group(2)]}.{kind}"
    if base in _GLOBAL_NAMES:
        return f"{_GLOBAL_NAMES[base]}.{kind}"
    raise ValueError(f"GGUF tensor {name!r} has no known Hugging Face name")


def _unpermute(w: torch.Tensor, heads: int) -> torch.Tensor:
    """Undoes llama.cpp's q/k row permutation: (heads, 2, d/2) interleave -> (heads, d) halves."""
    half = w.shape[0] // heads // 2
    return w.reshape(heads, half, 2, *w.shape[1:]).transpose(1, 2).reshape(w.shape)


def iterate_gguf_weights(path: str, num_heads: int, num_kv_heads: int) -> Iterator[tuple[str, torch.Tensor]]:
    import gguf

    reader = gguf.GGUFReader(path)
    arch = str(bytes(reader.fields["general.architecture"].parts[-1]), "utf-8")
    for t in reader.tensors:
        array = gguf.quants.dequantize(t.data, t.tensor_type)  # float32, shape reversed from t.shape
        tensor = torch.from_numpy(np.array(array, dtype=np.float32))  # a writable copy
        name = _hf_name(t.name, arch)
        if arch in _NORM_PLUS_ONE and name.endswith("norm.weight"):
            tensor -= 1
        if arch in _PERMUTED_QK and name.endswith(("q_proj.weight", "q_proj.bias")):
            tensor = _unpermute(tensor, num_heads)
        elif arch in _PERMUTED_QK and name.endswith(("k_proj.weight", "k_proj.bias")):
            tensor = _unpermute(tensor, num_kv_heads)
        yield name, tensor


def converted_folder(path: str) -> str:
    """A folder with config.json and tokenizer files for the GGUF file `path`, made on first use."""
    from transformers import AutoConfig, AutoTokenizer

    st = os.stat(path)
    key = hashlib.sha256(f"{os.path.abspath(path)}:{st.st_size}:{st.st_mtime_ns}".encode()).hexdigest()[:16]
    cache_root = os.environ.get("SGL_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "sgl")
    folder = os.path.join(cache_root, "gguf", key)
    if not os.path.exists(os.path.join(folder, "done")):
        directory, name = os.path.split(os.path.abspath(path))
        config = AutoConfig.from_pretrained(directory, gguf_file=name)
        if not getattr(config, "architectures", None):
            # Gemma3TextConfig -> Gemma3ForCausalLM (the text-only class of a multimodal family)
            family = type(config).__name__.removesuffix("Config").removesuffix("Text")
            config.architectures = [f"{family}ForCausalLM"]
        tokenizer = AutoTokenizer.from_pretrained(directory, gguf_file=name)
        tmp = folder + f".tmp{os.getpid()}"
        config.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        weights = dict(iterate_gguf_weights(path, config.num_attention_heads, config.num_key_value_heads))
        save_file(weights, os.path.join(tmp, "model.safetensors"))
        open(os.path.join(tmp, "done"), "w").close()
        os.makedirs(os.path.dirname(folder), exist_ok=True)
        try:
            os.replace(tmp, folder)
        except OSError:  # another process converted it first
            shutil.rmtree(tmp, ignore_errors=True)
    return folder
