"""Configs: `ModelConfig` normalizes a Hugging Face config once; `EngineConfig` holds engine knobs.

Model code reads plain fields from `ModelConfig`; every HF quirk (renamed fields, text
sub-configs, rope parameters in two spellings, missing head_dim) is resolved here.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from .multimodal.config import MultimodalConfig, multimodal_config

if TYPE_CHECKING:
    from .layers.pooler import Pooler


@dataclass(frozen=True)
class RopeConfig:
    """Rotary embedding parameters. `scaling_type` is one of: default, linear, dynamic, yarn,
    longrope, llama3. `params` keeps the type's own fields (factor, low_freq_factor, ...)."""

    theta: float = 10000.0
    scaling_type: str = "default"
    params: dict[str, Any] = field(default_factory=dict)
    rotary_dim: int = 0  # how many of head_dim's channels rotate (partial rotary)
    max_position: int = 2048  # the config's max_position_embeddings


def _rope_from_params(params: dict[str, Any], hf: Any, head_dim: int, max_position: int) -> RopeConfig:
    params = dict(params)
    theta = params.pop("rope_theta", None) or getattr(hf, "rope_theta", None) or 10000.0
    scaling_type = params.pop("rope_type", None) or params.pop("type", None) or "default"
    partial = params.pop("partial_rotary_factor", None) or getattr(hf, "partial_rotary_factor", None) or 1.0
    rotary_dim = getattr(hf, "rotary_dim", None) or int(head_dim * partial)  # GPT-J: absolute
    if scaling_type == "su":  # Phi-3's early name for longrope
        scaling_type = "longrope"
    if scaling_type == "mrope":  # Qwen2-VL's early configs: default frequencies, M-RoPE sections
        scaling_type = "default"
    if scaling_type not in ("default", "linear", "dynamic", "yarn", "longrope", "llama3"):
        raise ValueError(f"rope type {scaling_type!r} is not supported; supported: default, linear, "
                         "dynamic, yarn, longrope, llama3")
    return RopeConfig(theta=float(theta), scaling_type=scaling_type, params=params,
                      rotary_dim=rotary_dim, max_position=max_position)


def _rope_from_hf(hf: Any, head_dim: int, max_position: int) -> tuple[RopeConfig, RopeConfig | None]:
    """-> (rope of full-attention layers, rope of sliding-window layers when it differs)."""
    # transformers 5 keeps everything in `rope_parameters`; 4.x split `rope_theta` and `rope_scaling`.
    params = dict(getattr(hf, "rope_parameters", None) or {})
    legacy = getattr(hf, "rope_scaling", None)
    if legacy and not params.get("rope_type"):
        params.update(legacy)
    if isinstance(params.get("full_attention"), dict):  # Gemma 3: one rope per layer type
        local = params.get("sliding_attention")
        return (_rope_from_params(params["full_attention"], hf, head_dim, max_position),
                _rope_from_params(local, hf, head_dim, max_position) if local else None)
    return _rope_from_params(params, hf, head_dim, max_position), None


def _field(hf: Any, *names: str) -> Any:
    """The first of `names` that `hf` sets (HF families spell the same field differently)."""
    for name in names:
        value = getattr(hf, name, None)
        if value is not None:
            return value
    return None


def _num_kv_heads(hf: Any, heads: int) -> int:
    if getattr(hf, "new_decoder_architecture", False):  # Falcon 40B/180B
        return hf.num_kv_heads
    if getattr(hf, "multi_query", False):  # Falcon 7B, GPTBigCode
        return 1
    nested = getattr(hf, "attn_config", None)  # DBRX: attn_config.kv_n_heads
    nested_kv = getattr(nested, "kv_n_heads", None) if nested is not None and not isinstance(nested, dict) else None
    return _field(hf, "num_key_value_heads") or nested_kv or heads


def _layer_windows(hf: Any, num_layers: int) -> tuple[int | None, ...]:
    window = getattr(hf, "sliding_window", None)
    if getattr(hf, "use_sliding_window", True) is False:
        window = None
    types = getattr(hf, "layer_types", None)
    if types:
        return tuple(window if t == "sliding_attention" else None for t in types)
    return (window,) * num_layers


@dataclass(frozen=True)
class Scales:
    """Constants some families scale by, read once from whatever the config calls them (None:
    not used). The families that set these fields are the ones whose forwards read them."""

    embed: float | None = None  # embeddings *= (Granite embedding_multiplier)
    residual: float | None = None  # sublayer outputs *= before the residual add (Granite)
    attention: float | None = None  # the score scale instead of head_dim ** -0.5: Granite's
    #     attention_multiplier, Gemma 2/3 query_pre_attn_scalar ** -0.5, MPT attn_config.softmax_scale
    logits: float | None = None  # logits *= (Granite 1 / logits_scaling, Cohere logit_scale)
    attn_softcap: float | None = None  # scores = cap * tanh(scores / cap) (Gemma 2 attn_logit_softcapping)
    final_softcap: float | None = None  # the same on the logits (Gemma 2/3 final_logit_softcapping)
    clip_qkv: float | None = None  # q, k, v clamped to [-clip, clip] (OLMo; MPT attn_config.clip_qkv)


def _scales(hf: Any) -> Scales:
    nested = getattr(hf, "attn_config", None)  # MPT keeps its attention fields in a sub-config
    nested = nested if nested is not None and not isinstance(nested, dict) else None
    pre_attn = getattr(hf, "query_pre_attn_scalar", None)
    logits_scaling = getattr(hf, "logits_scaling", None)
    return Scales(
        embed=getattr(hf, "embedding_multiplier", None),
        residual=getattr(hf, "residual_multiplier", None),
        attention=getattr(hf, "attention_multiplier", None) or (pre_attn**-0.5 if pre_attn else None)
        or (getattr(nested, "softmax_scale", None) if nested else None),
        logits=1.0 / logits_scaling if logits_scaling else getattr(hf, "logit_scale", None),
        attn_softcap=getattr(hf, "attn_logit_softcapping", None),
        final_softcap=getattr(hf, "final_logit_softcapping", None),
        clip_qkv=getattr(hf, "clip_qkv", None) or (getattr(nested, "clip_qkv", None) if nested else None))


@dataclass(frozen=True)
class ModelConfig:
    """The fields every model file reads. `hf` keeps the original config for family-specific
    fields that a model reads directly (e.g. `hf.final_logit_softcapping`)."""

    architecture: str
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    norm_eps: float  # of every norm: rms_norm_eps, layer_norm_eps, layer_norm_epsilon, ...
    rope: RopeConfig  # of full-attention layers
    sliding_rope: RopeConfig | None  # of sliding-window layers when it differs (Gemma 3)
    max_position: int
    tie_word_embeddings: bool
    attention_bias: bool
    mlp_bias: bool
    hidden_act: str
    eos_token_ids: tuple[int, ...]
    layer_windows: tuple[int | None, ...]  # sliding window of each layer, None = full attention
    torch_dtype: torch.dtype | None
    scales: Scales = field(default_factory=Scales)
    hf: Any = field(repr=False, compare=False, default=None)
    # the checkpoint's pooling (sentence-transformers' modules.json, read by the loader:
    # loader/sentence_transformers.py); None: the model family's rule
    pooling: Pooler | None = None
    # a vision-language checkpoint's vision fields (tower, image token, feature layers); None: text only
    multimodal: MultimodalConfig | None = None
    # the longest input a pooling model takes (sentence_bert_config.json max_seq_length); None: context
    max_seq_length: int | None = None
    # classification heads (*ForSequenceClassification, reward models): labels in id order and
    # how logits become scores ("sigmoid" | "softmax" | "none"; None: the model family's rule)
    labels: tuple[str, ...] = ()
    score_activation: str | None = None
    # Matryoshka embeddings: None = no truncation allowed, () = any size, else the sizes allowed
    matryoshka_dims: tuple[int, ...] | None = None
    # the top-level config's projection_dim (CLIPModel: the joint text-image space), else None
    projection_dim: int | None = None
    # a dual encoder's (CLIPModel's) vision_config, for its image side; None elsewhere
    vision_hf: Any = None

    @classmethod
    def from_hf(cls, hf: Any) -> ModelConfig:
        text = hf.get_text_config() if hasattr(hf, "get_text_config") else hf
        arch = (getattr(hf, "architectures", None) or [None])[0]
        if arch is None:
            raise ValueError("config.json has no `architectures`; set it to the model class name, "
                             "e.g. [\"LlamaForCausalLM\"]")
        hidden = text.hidden_size
        heads = text.num_attention_heads
        layers = text.num_hidden_layers
        head_dim = getattr(text, "head_dim", None) or hidden // heads
        max_pos = _field(text, "max_position_embeddings", "max_seq_len") or 2048
        eos = getattr(text, "eos_token_id", None)
        eos_ids = tuple(eos) if isinstance(eos, (list, tuple)) else (() if eos is None else (eos,))
        intermediate = _field(text, "intermediate_size", "ffn_dim", "ffn_hidden_size", "n_inner")
        if intermediate is None:  # GPT-2, Falcon, BLOOM; MPT too (transformers ignores expansion_ratio)
            intermediate = 4 * hidden
        rope, sliding_rope = _rope_from_hf(text, head_dim, max_pos)
        return cls(
            architecture=arch,
            vocab_size=text.vocab_size,
            hidden_size=hidden,
            intermediate_size=int(intermediate),
            num_layers=layers,
            num_heads=heads,
            num_kv_heads=_num_kv_heads(text, heads),
            head_dim=head_dim,
            norm_eps=_field(text, "rms_norm_eps", "layer_norm_eps", "layer_norm_epsilon", "norm_epsilon",
                            "norm_eps") or 1e-6,
            rope=rope,
            sliding_rope=sliding_rope,
            max_position=max_pos,
            tie_word_embeddings=bool(getattr(hf, "tie_word_embeddings", False)),
            attention_bias=bool(getattr(text, "attention_bias", False)),
            mlp_bias=bool(getattr(text, "mlp_bias", False)),
            hidden_act=_field(text, "hidden_activation", "hidden_act", "activation_function", "activation")
            or "silu",
            eos_token_ids=eos_ids,
            layer_windows=_layer_windows(text, layers),
            torch_dtype=_dtype_or_none(getattr(hf, "dtype", None) or getattr(hf, "torch_dtype", None)),
            scales=_scales(text),
            hf=text,
            multimodal=multimodal_config(hf),
            labels=_labels(hf),
            score_activation=_score_activation(hf),
            matryoshka_dims=_matryoshka(hf),
            projection_dim=getattr(hf, "projection_dim", None) if text is not hf else None,
            vision_hf=getattr(hf, "vision_config", None) if text is not hf else None,
        )


def _labels(hf: Any) -> tuple[str, ...]:
    """id2label in id order (transformers fills LABEL_i when a config names none)."""
    id2label = getattr(hf, "id2label", None) or {}
    n = getattr(hf, "num_labels", None) or len(id2label)
    return tuple(str(id2label.get(i, id2label.get(str(i), f"LABEL_{i}"))) for i in range(n))


# sentence-transformers' CrossEncoder activation paths -> ours
_ST_ACTIVATIONS = {"Sigmoid": "sigmoid", "Identity": "none", "Softmax": "softmax"}


def _score_activation(hf: Any) -> str | None:
    if getattr(hf, "problem_type", None) == "multi_label_classification":
        return "sigmoid"
    st = getattr(hf, "sentence_transformers", None)
    path = (st.get("activation_fn") if isinstance(st, dict) else None) or \
        getattr(hf, "sbert_ce_default_activation_function", None)
    if isinstance(path, str):
        name = path.rsplit(".", 1)[-1]
        if name not in _ST_ACTIVATIONS:
            raise ValueError(f"config.json activation_fn={path!r} is not supported; use torch.nn Sigmoid, "
                             "Softmax or Identity")
        return _ST_ACTIVATIONS[name]
    return None


def _matryoshka(hf: Any) -> tuple[int, ...] | None:
    dims = getattr(hf, "matryoshka_dimensions", None)
    if dims:
        return tuple(int(d) for d in dims)
    return () if getattr(hf, "is_matryoshka", False) else None


def _dtype_or_none(value: Any) -> torch.dtype | None:
    if value is None or isinstance(value, torch.dtype):
        return value
    return getattr(torch, str(value), None)


QUANTIZATIONS = ("none", "auto", "q8_0", "q4_0")  # EngineConfig.quantization, see loader/quantize.py
SCHEDULE_POLICIES = ("lpm", "dfs-weight", "fcfs")
ATTENTION_BACKENDS = ("auto", "torch_native", "triton")  # see layers/attention_backend.py


@dataclass(frozen=True)
class EngineConfig:
    """Engine knobs. Every field is also a `--flag` of the CLI (see `runtime/cli.py`)."""

    model_path: str | None = None
    tokenizer_path: str | None = None
    dtype: str = "auto"  # auto | bfloat16 | float32 | float16
    quantization: str = "none"  # none | auto (a GGUF's types as stored) | q8_0 | q4_0 (loader/quantize.py)
    device: str = "auto"  # auto | cpu | cuda
    attention_backend: str = "auto"  # auto | torch_native | triton (layers/attention_backend.py)
    max_total_tokens: int | None = None  # KV slots; None = from mem_fraction_static
    mem_fraction_static: float = 0.25  # of free memory, when max_total_tokens is None
    max_running_requests: int = 256
    max_prefill_tokens: int = 16384  # token budget of one prefill batch (an encoder's: at most 4,096)
    chunked_prefill_size: int = 2048  # longest prefill chunk of one request; <= 0 disables
    schedule_policy: str = "lpm"
    disable_radix_cache: bool = False
    disable_jump_forward: bool = False
    context_length: int | None = None  # defaults to the model's max_position_embeddings
    random_seed: int = 0
    trust_remote_code: bool = False
    revision: str | None = None
    allow_url_media: bool = False  # fetch http(s) image/video URLs (off: a server fetching for callers)
    encoder_cache_mb: int = 256  # image/video encoder outputs kept by content hash (LRU); Mllama: its
    # images' cross-attention KV too, in a second cache of this size
    is_embedding: bool | None = None  # serve a CausalLM as a last-token embedder; None: by architecture
    # tensor parallelism (distributed/): tp_size ranks over nnodes nodes, tp_size // nnodes each;
    # every node is launched with the same flags but its own node_rank; ranks meet at dist_init_addr
    tp_size: int = 1
    nnodes: int = 1
    node_rank: int = 0
    dist_init_addr: str | None = None  # HOST:PORT of node 0 (default on one node: a free local port)

    def __post_init__(self) -> None:
        if self.dtype not in ("auto", "bfloat16", "float32", "float16"):
            raise ValueError(f"dtype={self.dtype!r}: use auto, bfloat16, float32 or float16")
        if self.attention_backend not in ATTENTION_BACKENDS:
            raise ValueError(f"attention_backend={self.attention_backend!r}: use one of {', '.join(ATTENTION_BACKENDS)}")
        if self.quantization not in QUANTIZATIONS:
            raise ValueError(f"quantization={self.quantization!r}: use one of {', '.join(QUANTIZATIONS)}")
        if self.quantization != "none" and self.tp_size > 1:
            raise ValueError(f"quantization={self.quantization!r} with tp_size={self.tp_size}: quantized weights "
                             "are not sharded yet; use quantization='none' under tensor parallelism")
        if self.schedule_policy not in SCHEDULE_POLICIES:
            raise ValueError(f"schedule_policy={self.schedule_policy!r}: use one of {SCHEDULE_POLICIES}")
        if self.max_total_tokens is not None and self.max_total_tokens < 16:
            raise ValueError("max_total_tokens must be at least 16")
        if self.max_running_requests < 1:
            raise ValueError("max_running_requests must be at least 1")
        if self.max_prefill_tokens < 1:
            raise ValueError("max_prefill_tokens must be at least 1")
        if self.encoder_cache_mb < 0:
            raise ValueError("encoder_cache_mb must be >= 0")
        if not 0.0 < self.mem_fraction_static <= 1.0:
            raise ValueError("mem_fraction_static must be in (0, 1]")
        self._check_parallel()

    def _check_parallel(self) -> None:
        if self.tp_size < 1 or self.nnodes < 1:
            raise ValueError(f"tp_size={self.tp_size}, nnodes={self.nnodes}: both must be at least 1")
        if self.tp_size % self.nnodes:
            raise ValueError(f"tp_size={self.tp_size} must be a multiple of nnodes={self.nnodes} "
                             "(each node runs tp_size // nnodes ranks)")
        if not 0 <= self.node_rank < self.nnodes:
            raise ValueError(f"node_rank={self.node_rank}: use 0..{self.nnodes - 1} (nnodes={self.nnodes})")
        if self.nnodes > 1 and not self.dist_init_addr:
            raise ValueError("nnodes > 1 needs dist_init_addr=HOST:PORT, the address of node 0 every node can reach")
        if self.dist_init_addr is not None and not self.dist_init_addr.rpartition(":")[2].isdigit():
            raise ValueError(f"dist_init_addr={self.dist_init_addr!r}: use HOST:PORT, e.g. 10.0.0.1:5000")

    def replace(self, **changes: Any) -> EngineConfig:
        return dataclasses.replace(self, **changes)


def pick_device(name: str) -> torch.device:
    """`auto` is the CPU until the CUDA path is tested end to end (the GPU issue); `cuda` runs
    the torch backend on the GPU and says it is experimental."""
    if name == "auto" or name == "cpu":
        return torch.device("cpu")
    if name == "cuda":
        if not torch.cuda.is_available():
            raise ValueError("device='cuda': no CUDA device is visible; use device='cpu'")
        logging.getLogger("sgl.runtime").warning(
            "device='cuda' is experimental: the CUDA path has not passed the parity suite yet")
        return torch.device("cuda")
    raise ValueError(f"device={name!r}: use auto, cpu or cuda")
