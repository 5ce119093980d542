"""The decoder stack of a plain Llama in one C call, for decode and prefill on the CPU in bf16.

At batch-1 decode the 30 layers of SmolLM2-135M cost ~20 torch ops and ~15 module calls each,
~10 ms of Python a step on top of ~14 ms of weight streaming. kernels/cpu/decoder_bf16.c runs
the layers' own kernels back to back instead, with the same rounding.

Every token is a row of its own there: its attention reads the KV pool up to its position and
every kernel computes it the same way whatever else is in the call. So a token gets the same
logits decoded alone, in a batch of any size, or inside a jump-forward extend (which the
scheduler marks `rowwise`), and greedy output does not depend on batch composition or on
jump-forward.

With packed weights, a prefill (an extend of more than 32 tokens, not rowwise) also runs here,
in one call for the whole batch: attention then goes per request on the tile unit, as the
module path's prefill does, so its output is what the module path gives, without Python per
layer. Every variant flag takes the module path.

Weights: packed for the tile kernel (runtime/layers/linear.py: pack_tile_weights), where the
products also add the residual and apply silu * up, or as loaded (where they could not be
packed): kernels/cpu/linear_bf16.c then serves 32 rows a pass with AMX, 4 with AVX-512 BF16
alone, 16 on AVX2 (decode and rowwise batches of any size there, in calls of 32 rows); at ISA
level none the stack does not run.
"""

from __future__ import annotations

import ctypes
import dataclasses

import torch
from sgl.kernels.attention import prefill_attention_applies
from sgl.kernels.cpu import dispatch, library, simd_path
from sgl.kernels.linear import AVX2_MAX_ROWS, max_rows
from torch import nn

from ..config import Scales
from ..forward_batch import ForwardBatch, ForwardMode
from ..models.llama import LlamaFlags, LlamaForCausalLM, LlamaMLP
from ..models.vision_language import VisionLanguageModel

ROWS_PER_CALL = 32  # the tile kernel's rows per pass (kernels/cpu/linear_bf16.c)
# Decode and rowwise rows the stack takes where the linear kernel is AVX-512 BF16's dot-product
# loop (max_rows 4: past that the module path's products go to oneDNN). The loop is
# compute-bound, yet the stack, free of Python and torch attention, stays ahead of the module
# path up to here (SmolLM2-135M on a 2-core Zen 4, decode tok/s stack vs modules: 8 rows 221 vs
# 138, 16: 269 vs 243, 32: 267 vs 313)
DOT_STACK_ROWS = 16


class LayerPointers(ctypes.Structure):
    """sgl_layer in kernels/cpu/decoder_bf16.c."""

    _fields_ = [(name, ctypes.c_void_p) for name in
                ("input_norm", "qkv_w", "qkv_b", "o_w", "o_b", "post_norm", "gate_up_w", "down_w",
                 "k_pool", "v_pool")] + [("window", ctypes.c_int64), ("tiles", ctypes.c_int64)] + [
                (name, ctypes.c_void_p) for name in ("q_norm", "k_norm", "attn_out_norm", "mlp_out_norm")] + [
                ("norm_offset", ctypes.c_float), ("gelu", ctypes.c_int32), ("second_rope", ctypes.c_int64)]


GELU_TANH = ("gelu_pytorch_tanh", "gelu_new", "gelu_fast")  # activations the stack runs as GeLU-tanh


def _linears(layer) -> tuple:
    return layer.self_attn.qkv_proj, layer.self_attn.o_proj, layer.mlp.gate_up_proj, layer.mlp.down_proj


def _weight(linear) -> int:
    """The address the C stack reads the linear's weight at: bf16 (N, K), tiles, or sgl_qweight."""
    if linear.qweight is not None:
        return ctypes.addressof(linear.qweight.struct)
    return (linear.weight if linear.tiles is None else linear.tiles).data_ptr()


def fused_decoder_applies(config, flags) -> bool:
    """Whether a model with these flags is a decoder the C stack implements: Llama's (pre-norm
    RMS, rope in the GPT-NeoX layout on every layer, gated SiLU MLP without bias, optional q/k/v
    and o biases) or Gemma's variations of it (1 + w norms, sandwich norms, per-head q/k norms,
    GeLU-tanh, a query_pre_attn_scalar, a second rope for the sliding-window layers, final logit
    soft-capping, which the head applies); no other multipliers, caps or ALiBi."""
    variations = dict(qkv_bias=None, o_bias=None, hidden_act=None, embed_scale=None)
    if flags.norm == "gemma":
        variations.update(norm="rms")
    if flags.block == "sandwich":
        variations.update(block="pre")
    if flags.qk_norm == "head":
        variations.update(qk_norm=None)
    plain = dataclasses.replace(flags, **variations) == LlamaFlags()
    scales = dataclasses.replace(config.scales, attention=None, final_softcap=None) == Scales()
    act = flags.hidden_act or config.hidden_act
    mlp_bias = config.mlp_bias if flags.mlp_bias is None else flags.mlp_bias
    return plain and scales and act in ("silu", "swish", *GELU_TANH) and not mlp_bias


class FusedDecoder:
    """Runs `layers` (LlamaDecoderLayer list) for decode and rowwise batches of bf16 tokens."""

    def __init__(self, layers: nn.ModuleList, config, flags: LlamaFlags) -> None:
        self.layers, self.config = layers, config
        self._pointers: tuple[int, ctypes.Array] | None = None  # (id of the KV pool, layer structs)
        self._weight_kind: str | None = None  # see _weights
        self._tile_prefill: bool | None = None  # see _prefill_on_tiles
        # the ropes in layer order: one, or Gemma 3's global and sliding-window ones
        self.rotaries = list({id(layer.self_attn.rotary): layer.self_attn.rotary for layer in layers}.values())
        self.norm_offset = 1.0 if flags.norm == "gemma" else 0.0
        self.gelu = (flags.hidden_act or config.hidden_act) in GELU_TANH
        # Gemma's variations: the packed-tile path (residual adds and silu * up inside the
        # products) has none of them
        self.variant = (flags.block == "sandwich" or flags.qk_norm is not None or self.norm_offset != 0.0
                        or self.gelu or len(self.rotaries) > 1)

    def accepts(self, x: torch.Tensor, batch: ForwardBatch) -> bool:
        if x.dtype != torch.bfloat16 or x.device.type != "cpu":
            return False
        weights = self._weights()
        if weights == "packed" and not self.variant:  # the tile kernel: any size, in calls of 32 rows
            if batch.mode == ForwardMode.DECODE or batch.rowwise or x.shape[0] <= ROWS_PER_CALL:
                return True
            return self._prefill_on_tiles()  # a longer extend: one call, tile attention per request
        if weights == "quant":  # quantized (linear_quant.c): every row alone, any size in calls of 32 rows
            if not simd_path():
                return False  # NOTE: as for bf16 weights, the stack runs from avx2 up
            return batch.mode == ForwardMode.DECODE or batch.rowwise or x.shape[0] <= ROWS_PER_CALL
        if weights == "plain":  # as loaded: 32 rows a pass with AMX, 16 on AVX2, 4 on AVX-512 (decode: 16), 0 at none
            limit = max_rows(self.config.hidden_size)
            one_by_one = batch.mode == ForwardMode.DECODE or batch.rowwise
            if limit >= AVX2_MAX_ROWS and one_by_one:
                return True  # any size, in calls of 32 rows: each row computed alone
            if limit > 0 and one_by_one:
                return x.shape[0] <= max(limit, DOT_STACK_ROWS)
            return x.shape[0] <= limit
        return False

    def _weights(self) -> str:
        """Which weights the layers hold: "packed" (every layer's four packed for the tile
        kernel, gate/up gated), "plain" (none packed, all bf16), "quant" (all four quantized,
        sgl.kernels.quant) or "unsupported". Packing
        happens once, after loading, so the answer is cached."""
        if self._weight_kind is None:
            linears = [lin for layer in self.layers for lin in _linears(layer)]
            if all(lin.tiles is not None for lin in linears) and all(
                    layer.mlp.gate_up_proj.gated_tiles for layer in self.layers):
                self._weight_kind = "packed"
            elif all(lin.qweight is not None for lin in linears):
                self._weight_kind = "quant"
            elif all(lin.tiles is None and lin.weight is not None and lin.weight.dtype == torch.bfloat16
                     for lin in linears):
                self._weight_kind = "plain"
            else:
                self._weight_kind = "unsupported"
        return self._weight_kind

    def _prefill_on_tiles(self) -> bool:
        """Whether prefill attention runs on the tile unit in every layer (as the module path's
        does: kernels/cpu/prefill_attention_bf16.c) and no layer has a window."""
        if self._tile_prefill is None:
            self._tile_prefill = (prefill_attention_applies(self.config.head_dim)
                                  and not any(layer.self_attn.attn.sliding_window for layer in self.layers))
        return self._tile_prefill

    def _layer_structs(self, batch: ForwardBatch) -> ctypes.Array:
        pool = batch.kv_pool
        if self._pointers is None or self._pointers[0] != id(pool):
            structs = (LayerPointers * len(self.layers))()
            ptr = lambda module, name: None if module is None else getattr(module, name).weight.data_ptr()  # noqa: E731
            for i, layer in enumerate(self.layers):
                qkv, o, gate_up, down = _linears(layer)
                attn, sandwich = layer.self_attn, getattr(layer, "post_self_attn_layernorm", None) is not None
                structs[i] = LayerPointers(
                    layer.input_layernorm.weight.data_ptr(), _weight(qkv),
                    None if qkv.bias is None else qkv.bias.data_ptr(), _weight(o),
                    None if o.bias is None else o.bias.data_ptr(),
                    layer.post_attention_layernorm.weight.data_ptr(), _weight(gate_up),
                    _weight(down), pool.keys(i).data_ptr(), pool.values(i).data_ptr(),
                    attn.attn.sliding_window or 0, {"packed": 1, "quant": 2}.get(self._weights(), 0),
                    ptr(attn if attn.qk_norm else None, "q_norm"), ptr(attn if attn.qk_norm else None, "k_norm"),
                    ptr(layer if sandwich else None, "post_self_attn_layernorm"),
                    ptr(layer if sandwich else None, "post_mlp_layernorm"),
                    self.norm_offset, int(self.gelu), int(attn.rotary is not self.rotaries[0]))
            self._pointers = (id(pool), structs)
        return self._pointers[1]

    def __call__(self, x: torch.Tensor, batch: ForwardBatch) -> torch.Tensor:
        """x (tokens, hidden) embeddings -> (tokens, hidden) residual stream after every layer."""
        c, lib = self.config, library()
        assert lib is not None
        dispatch["fused_decoder"] += 1
        tokens = x.shape[0]
        # one query row per token: token j of request b sees its prefix and new tokens up to j
        if batch.mode == ForwardMode.DECODE:
            q_req, kv_len = batch.req_rows.contiguous(), torch.tensor(batch.seq_lens, dtype=torch.int64)
        else:
            q_req, kv_len = batch.query_rows()
        max_len = int(kv_len.max())
        rotary = self.rotaries[0]
        cos, sin = rotary.cos_sin(batch.positions, torch.bfloat16)  # (tokens, 1, rotary_dim // 2)
        second_cos, second_sin = self.rotaries[-1].cos_sin(batch.positions, torch.bfloat16)
        attn0 = self.layers[0].self_attn
        # a prefill of more than 32 tokens: one call, attention per request on the tile unit
        prefill = batch.mode != ForwardMode.DECODE and not batch.rowwise and tokens > ROWS_PER_CALL
        rows_per_call = tokens if prefill else ROWS_PER_CALL
        rows = min(tokens, rows_per_call)
        q_width, kv_width = c.num_heads * c.head_dim, c.num_kv_heads * c.head_dim
        widest = max(c.hidden_size, c.intermediate_size, q_width)
        scratch = torch.empty(rows * (2 * c.hidden_size + 2 * q_width + 2 * kv_width + 3 * c.intermediate_size)
                              + 32 * widest, dtype=torch.bfloat16)
        # a prefill's requests: table rows, prefix lengths, new tokens (held here through the call)
        requests = ((batch.req_rows.contiguous(), torch.tensor(batch.prefix_lens), torch.tensor(batch.extend_lens))
                    if prefill else ())
        per_request = tuple(t.data_ptr() for t in requests) or (None, None, None)
        x = x.contiguous()
        table = batch.req_to_token
        slots = batch.out_slots.contiguous()
        cos, sin, second_cos, second_sin = (t.contiguous() for t in (cos, sin, second_cos, second_sin))
        structs = self._layer_structs(batch)
        # NOTE: calls go in token order, so a request's later tokens (in a later call) find the
        # keys of its earlier ones in the pool, every layer's
        for start in range(0, tokens, rows_per_call):
            n = min(rows_per_call, tokens - start)
            lib.sgl_llama_layers_bf16(
                x[start].data_ptr(), n, structs, len(self.layers), c.hidden_size, c.num_heads, c.num_kv_heads,
                c.head_dim, c.intermediate_size, c.norm_eps, attn0.attn.scaling, rotary.rotary_dim,
                cos[start].data_ptr(), sin[start].data_ptr(), second_cos[start].data_ptr(), second_sin[start].data_ptr(),
                slots[start].data_ptr(), table.data_ptr(),
                table.stride(0), q_req[start].data_ptr(), kv_len[start].data_ptr(), max_len, scratch.data_ptr(),
                len(batch.extend_lens) if prefill else 0, *per_request)
        return x


def text_decoder_of(model: nn.Module) -> LlamaForCausalLM | None:
    """The Llama that computes `model`'s hidden states: the model itself, or the language model
    a vision-language model hands its whole forward to (LLaVA: the media rows are already the
    batch's input embeddings); None for any other model."""
    if isinstance(model, VisionLanguageModel) and type(model).forward is VisionLanguageModel.forward:
        model = model.language_model
    return model if isinstance(model, LlamaForCausalLM) else None


def fused_decoder_for(model: nn.Module) -> FusedDecoder | None:
    """The C stack for a model whose tokens run through the plain Llama it implements (the
    runner asks; the model file does not know it exists), else None."""
    if type(model).task != "generate" or (model := text_decoder_of(model)) is None:
        return None
    if getattr(model, "tp_size", 1) > 1:
        # NOTE: a tensor-parallel rank takes the module path: the C stack runs every layer in one
        # call and would need an all-reduce after each o_proj and down_proj inside it
        return None
    flags = type(model).flags(model.config)
    if not fused_decoder_applies(model.config, flags):
        return None
    if not all(isinstance(layer.mlp, LlamaMLP) for layer in model.model.layers):
        return None  # MoE layers take the module path (layers/moe.py)
    ropes = {(layer.self_attn.rotary.rotary_dim, layer.self_attn.rotary.interleaved) for layer in model.model.layers
             if layer.self_attn.rotary is not None}
    if len(ropes) != 1 or any(layer.self_attn.rotary is None for layer in model.model.layers):
        return None  # the stack ropes every layer, at one width
    stack = FusedDecoder(model.model.layers, model.config, flags)
    return stack if len(stack.rotaries) <= 2 else None


def forward_fused(stack: FusedDecoder, model: nn.Module, batch: ForwardBatch) -> torch.Tensor:
    """The model's hidden states, its layers in the C stack where it takes the batch (bf16 on
    the CPU: decode in calls of 32 rows, a prefill in one; same kernels and rounding)."""
    inner = text_decoder_of(model).model
    x = inner.embed(batch)
    # 3-D positions and non-causal spans are the module path's (the stack ropes 1-D positions, causally)
    if batch.mrope_positions is None and batch.attend_span is None and stack.accepts(x, batch):
        return inner.norm(stack(x, batch))
    return inner.run_layers(x, batch)
