"""Llama 4: a Llama decoder whose rope layers attend within chunks of
attention_chunk_size positions with weightless L2-normed q/k, whose NoPE layers (no_rope_layers
0) attend fully with the query scaled by the attention temperature
log1p(floor((pos + 1) / floor_scale)) * attn_scale + 1, and whose MoE layers (moe_layers /
interleave_moe_layer_step) route top-k logits to sigmoid weights that scale the expert's input,
beside a shared expert; dense layers are intermediate_size_mlp wide. Rope rotates adjacent
pairs (complex form). `Llama4ForConditionalGeneration` adds the vision side."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import torch
from torch import nn

from ..config import ModelConfig
from ..forward_batch import ForwardBatch
from ..layers.linear import Linear
from ..layers.moe import MoESpec
from ..layers.moe_router import RouterSpec
from ..layers.rotary import RotaryEmbedding
from ..layers.vision_llama4 import Llama4VisionTower
from ..multimodal.config import MultimodalConfig
from ..multimodal.items import MediaItem
from ..multimodal.llama4_images import Llama4ImageProcessor
from .llama import QKV_PACKED, LlamaFlags
from .llama_layers import LlamaAttention
from .moe_llama import MoEForCausalLM, experts_per_token, num_experts
from .vision_language import VisionLanguageModel


class Llama4Attention(LlamaAttention):
    """LlamaAttention with chunked attention, L2 q/k norms (rope layers) and the attention
    temperature (NoPE layers)."""

    def __init__(self, config: ModelConfig, flags: LlamaFlags, layer_id: int, rotary: RotaryEmbedding | None) -> None:
        super().__init__(config, flags, layer_id, rotary)
        h = config.hf
        types = getattr(h, "layer_types", None) or []
        self.attn.chunk = h.attention_chunk_size if layer_id < len(types) and types[layer_id] == "chunked_attention" \
            else None
        self.l2_eps = config.norm_eps if rotary is not None and h.use_qk_norm else None
        self.temperature = (float(h.floor_scale), float(h.attn_scale)) \
            if rotary is None and h.attn_temperature_tuning else None

    def _l2(self, x: torch.Tensor, heads: int) -> torch.Tensor:
        """x (tokens, heads * d) RMS-normed per head without a weight, in float32."""
        v = x.view(-1, heads, self.head_dim).float()
        return (v * torch.rsqrt(v.pow(2).mean(-1, keepdim=True) + self.l2_eps)).to(x.dtype).flatten(1)

    def forward(self, positions: torch.Tensor, x: torch.Tensor, batch: ForwardBatch,
                residual: torch.Tensor | None = None) -> torch.Tensor:
        q, k, v = self.qkv_proj.split(self.qkv_proj(x))
        if self.rotary is not None:
            q, k = self.rotary(positions, q, k)
        if self.l2_eps is not None:
            q, k = self._l2(q, self.heads), self._l2(k, self.kv_heads)
        if self.temperature is not None:
            floor_scale, attn_scale = self.temperature
            scale = torch.log1p(torch.floor((positions.float() + 1.0) / floor_scale)) * attn_scale + 1.0
            q = (q * scale[:, None]).to(q.dtype)
        return self.o_proj(self.attn(q, k, v, batch), residual)


class Llama4ForCausalLM(MoEForCausalLM):
    renamed_weights = [(r"^language_model\.", ""), (r"\.feed_forward\.", ".mlp."), (r"\.mlp\.router\.", ".mlp.gate.")]
    stacked_weights: list = []

    @staticmethod
    def flags(config: ModelConfig) -> LlamaFlags:
        return LlamaFlags(interleaved_rope=True, rope_layers=tuple(bool(r) for r in config.hf.no_rope_layers))

    def moe_spec(self) -> MoESpec:
        h = self.config.hf
        return MoESpec(RouterSpec(num_experts(h), experts_per_token(h), scoring="topk_sigmoid", weight_input=True),
                       self.config.intermediate_size, self.config.hidden_act)

    def is_moe_layer(self, layer_id: int) -> bool:
        return layer_id in self.config.hf.moe_layers

    def shared_expert(self) -> nn.Module | None:
        return self.dense_mlp(self.config.intermediate_size)

    def make_mlp(self, layer_id: int) -> nn.Module | None:
        return super().make_mlp(layer_id) if self.is_moe_layer(layer_id) else \
            self.dense_mlp(self.config.hf.intermediate_size_mlp)

    def make_attention(self, layer_id: int, rotary: RotaryEmbedding | None) -> nn.Module | None:
        return Llama4Attention(self.config, self.flags(self.config), layer_id, rotary)

    def transform_weights(self, weights: Iterable[tuple[str, torch.Tensor]]) -> Iterator[tuple[str, torch.Tensor]]:
        """experts.gate_up_proj (E, H, 2I: gate columns then up) and down_proj (E, I, H) into
        layers/moe.py's (E, 2I, H) and (E, H, I)."""
        for name, t in weights:
            if name.endswith(".experts.gate_up_proj"):
                yield name[: -len("gate_up_proj")] + "w13_weight", t.transpose(1, 2).contiguous()
            elif name.endswith(".experts.down_proj"):
                yield name[: -len("down_proj")] + "w2_weight", t.transpose(1, 2).contiguous()
            else:
                yield name, t


class Llama4ForConditionalGeneration(VisionLanguageModel):
    """Llama 4 with images: tiles (multimodal/llama4_images.py) through the vision tower
    (layers/vision_llama4.py) and a linear projector into the text model above. A prompt's
    <|image|> stands for one image and becomes, as Llama4Processor writes it: <|image_start|>,
    for a grid of several tiles each tile's <|patch|> rows (<|tile_x_separator|> between tiles
    of a row, <|tile_y_separator|> after each row), then <|image|> and the global tile's rows,
    then <|image_end|>; the item holds those text tokens (`with_text_rows`)."""

    modalities = ("image",)
    media_tokens = ("<|image|>", "<|image_start|>", "<|image_end|>", "<|tile_x_separator|>", "<|tile_y_separator|>")
    prompt_image_token = "<|image|>"
    renamed_weights = Llama4ForCausalLM.renamed_weights[1:]  # the text model's, its language_model. prefix kept

    def __init__(self, config: ModelConfig, max_length: int) -> None:
        super().__init__()
        self.config = config
        self.mm = mm = self.vision_config(config)
        if not mm.downsample_ratio:
            raise ValueError(f"{config.architecture}: vision_config has no pixel_shuffle_ratio")
        self.packed_modules = {**Llama4ForCausalLM.packed_modules, **QKV_PACKED}
        self.stacked_weights = Llama4ForCausalLM.stacked_weights
        self.language_model = Llama4ForCausalLM(config, max_length)
        self.vision_model = Llama4VisionTower(mm.tower, mm.downsample_ratio)
        self.multi_modal_projector = nn.Module()
        self.multi_modal_projector.linear_1 = Linear(mm.tower.out_hidden_size, config.hidden_size, bias=False)

    def transform_weights(self, weights: Iterable[tuple[str, torch.Tensor]]) -> Iterator[tuple[str, torch.Tensor]]:
        return self.language_model.transform_weights(weights)

    # ---- media -------------------------------------------------------------------------
    @staticmethod
    def load_image_processor(folder: str) -> Llama4ImageProcessor:
        return Llama4ImageProcessor.from_folder(folder)

    @staticmethod
    def tile_tokens(mm: MultimodalConfig) -> int:
        side = mm.tower.image_size // mm.tower.patch_size
        return int(side * side * mm.downsample_ratio**2)

    @classmethod
    def layout(cls, mm: MultimodalConfig, inputs: dict[str, torch.Tensor]) -> list[str | int]:
        """An image's positions: token names, or n for n rows of encoder output."""
        rows, cols = (int(v) for v in inputs["aspect_ratios"].reshape(-1))
        n = cls.tile_tokens(mm)
        out: list[str | int] = ["<|image_start|>"]
        if rows * cols > 1:
            for _ in range(rows):
                for x in range(cols):
                    out += [n] + (["<|tile_x_separator|>"] if x < cols - 1 else [])
                out.append("<|tile_y_separator|>")
        return out + ["<|image|>", n, "<|image_end|>"]

    @classmethod
    def num_media_tokens(cls, mm: MultimodalConfig, modality: str, inputs: dict[str, torch.Tensor]) -> int:
        return sum(p if isinstance(p, int) else 1 for p in cls.layout(mm, inputs))

    @classmethod
    def media_text_ids(cls, mm: MultimodalConfig, modality: str, inputs: dict[str, torch.Tensor],
                       token_ids: dict[str, int]) -> torch.Tensor:
        ids: list[int] = []
        for p in cls.layout(mm, inputs):
            ids += [-1] * p if isinstance(p, int) else [token_ids[p]]
        return torch.tensor(ids, dtype=torch.int64)

    @staticmethod
    def video_inputs(mm: MultimodalConfig, image_processor: object, frames: object,
                     fps: float | None) -> dict[str, torch.Tensor]:
        raise ValueError("video_data: Llama4ForConditionalGeneration does not take videos")

    def encode_media(self, items: list[MediaItem]) -> list[torch.Tensor]:
        """-> (item.length, hidden) per image: its tiles' rows in tile order (the global tile
        last) among its text tokens; all tiles in one tower call."""
        tiles = [it.inputs["pixel_values"] for it in items]
        x = self.multi_modal_projector.linear_1(self.vision_model(torch.cat(tiles)))  # (tiles, tokens, hidden)
        return [self.with_text_rows(it, f.reshape(-1, f.shape[-1])) for it, f in zip(items, x.split([t.shape[0] for t in tiles]))]
