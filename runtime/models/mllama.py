"""Mllama (`MllamaForConditionalGeneration`, Llama 3.2 Vision): the tiled Mllama tower
(layers/vision_mllama.py), a linear projector into the text width, and a Llama text model in
which some layers (config.cross_attention_layers) are gated cross-attention layers to the
images' projected states.

# differs from the other vision-language families: an image is not rows of the prompt. Its
# <|image|> stays one prompt token (a content-hashed id, so the radix cache tells images apart;
# embedded as <|image|>), and the tokens after it cross-attend to the image's keys and values,
# which the engine computes once per image hash and caches (multimodal/cross_kv.py,
# layers/cross_attention.py; which images a token sees: MultimodalInputs.cross_groups)."""

from __future__ import annotations

import torch
from torch import nn

from ..cache.kv_pool import KVPool, MHAKVPool
from ..config import ModelConfig
from ..forward_batch import ForwardBatch
from ..layers.cross_attention import CrossAttention
from ..layers.embedding import VocabEmbedding
from ..layers.linear import Linear
from ..layers.norm import RMSNorm
from ..layers.vision_mllama import MllamaVisionTower
from ..multimodal.config import MultimodalConfig
from ..multimodal.items import MediaItem
from .llama import GATE_UP_PACKED, QKV_PACKED, LlamaForCausalLM, LlamaMLP
from .vision_language import VisionLanguageModel

EXTRA_EMBEDDINGS = 8  # transformers' MllamaTextModel embeds vocab_size + 8 ids (<|image|> among them)


class MllamaCrossDecoderLayer(nn.Module):
    """x + tanh(attn gate) * cross_attn(norm(x)), then + tanh(mlp gate) * mlp(norm(x)), the MLP
    part kept only for tokens that attend to some image (full_text_row_masked_out_mask)."""

    def __init__(self, c: ModelConfig, cross_index: int) -> None:
        super().__init__()
        self.input_layernorm = RMSNorm(c.hidden_size, c.norm_eps)
        self.cross_attn = CrossAttention(c.hidden_size, c.num_heads, c.num_kv_heads, c.norm_eps, cross_index)
        self.cross_attn_attn_gate = nn.Parameter(torch.zeros(1), requires_grad=False)
        self.post_attention_layernorm = RMSNorm(c.hidden_size, c.norm_eps)
        self.mlp = LlamaMLP(c.hidden_size, c.intermediate_size, c.hidden_act, bias=False)
        self.cross_attn_mlp_gate = nn.Parameter(torch.zeros(1), requires_grad=False)

    def forward(self, positions: torch.Tensor, x: torch.Tensor, batch: ForwardBatch) -> torch.Tensor:
        if batch.cross is None:
            return x  # no request of the batch shows an image (transformers skips the layer)
        x = x + self.cross_attn_attn_gate.tanh() * self.cross_attn(self.input_layernorm(x), batch.cross)
        h = self.mlp(self.post_attention_layernorm(x)) * batch.cross.rows.to(x.dtype)
        return x + self.cross_attn_mlp_gate.tanh() * h


class MllamaTextForCausalLM(LlamaForCausalLM):
    """Llama whose cross-attention layers are MllamaCrossDecoderLayer. The KV pool holds only the
    self-attention layers (numbered among themselves): an image's keys and values live in the
    runner's cross-KV cache."""

    def __init__(self, config: ModelConfig, max_length: int) -> None:
        super().__init__(config, max_length)
        self.cross_layers = tuple(getattr(config.hf, "cross_attention_layers", None) or ())
        if not self.cross_layers:
            raise ValueError(f"{config.architecture}: text_config.cross_attention_layers is empty")
        for j, i in enumerate(self.cross_layers):
            self.model.layers[i] = MllamaCrossDecoderLayer(config, j)
        self.model.embed_tokens = VocabEmbedding(config.vocab_size + EXTRA_EMBEDDINGS, config.hidden_size)
        self_layers = [layer for layer in self.model.layers if not isinstance(layer, MllamaCrossDecoderLayer)]
        for pool_layer, layer in enumerate(self_layers):
            layer.self_attn.attn.layer_id = pool_layer
        self.pool_layers = len(self_layers)

    def make_kv_pool(self, dtype: torch.dtype, device: torch.device) -> KVPool:
        c = self.config
        return MHAKVPool(self.pool_layers, c.num_kv_heads, c.head_dim, dtype, device)


class MllamaForConditionalGeneration(VisionLanguageModel):
    modalities = ("image",)
    packed_modules = {**QKV_PACKED, **GATE_UP_PACKED}
    # saved names (language_model.model., vision_model.) and transformers 5's in-memory ones
    # (model.language_model., model.vision_model., lm_head); the cross layers' q/k/v are not packed
    renamed_weights = [(r"^model\.vision_model\.", "vision_model."),
                       (r"^model\.multi_modal_projector\.", "multi_modal_projector."),
                       (r"^model\.language_model\.", "language_model.model."), (r"^lm_head\.", "language_model.lm_head."),
                       (r"\.cross_attn\.([qkv])_proj\.", r".cross_attn.\1_in."),
                       (r"^(vision_model\..*\.self_attn\.)o_proj\.", r"\1out_proj.")]
    cross_attention = True  # the processor marks its requests' media as cross-attended

    def __init__(self, config: ModelConfig, max_length: int) -> None:
        super().__init__()
        self.config = config
        self.mm = mm = self.vision_config(config)
        self.language_model = MllamaTextForCausalLM(config, max_length)
        self.vision_model = MllamaVisionTower(mm.tower)
        self.multi_modal_projector = Linear(self.vision_model.out_width, config.hidden_size, bias=True)

    def forward(self, batch: ForwardBatch) -> torch.Tensor:
        # its own forward, not VisionLanguageModel's: the runner's fused C stack takes a VLM that
        # hands its forward to a plain Llama (layers/fused_decoder.py: text_decoder_of on main),
        # and it would run the cross-attention layers as self-attention ones
        return self.language_model(batch)

    # ---- media -------------------------------------------------------------------------
    @staticmethod
    def num_media_tokens(mm: MultimodalConfig, modality: str, inputs: dict[str, torch.Tensor]) -> int:
        if inputs["pixel_values"].shape[:2] != (1, 1):
            raise ValueError("image_data: one image per <|image|> token")
        return 1  # the <|image|> token itself

    @staticmethod
    def video_inputs(mm: MultimodalConfig, image_processor: object, frames: object,
                     fps: float | None) -> dict[str, torch.Tensor]:
        raise ValueError("video_data: MllamaForConditionalGeneration does not take videos")

    def encode_media(self, items: list[MediaItem]) -> list[torch.Tensor]:
        """(1, hidden) per image: the embedding of <|image|> (its place in the prompt)."""
        embed = self.language_model.model.embed_tokens
        row = embed(torch.tensor([self.mm.image_token_id], device=embed.weight.device))
        return [row for _ in items]

    def encode_cross(self, items: list[MediaItem]) -> list[torch.Tensor]:
        """Per image (cross layers, 2, rows, kv heads, head dim): every cross layer's keys and
        values of its projected vision states, rows = its own tiles x (1 + patches)."""
        device = self.vision_model.patch_embedding.weight.device
        pixels = torch.cat([it.inputs["pixel_values"][0] for it in items]).to(device)  # (n, tiles, C, H, W)
        ratio = torch.cat([it.inputs["aspect_ratio_ids"][0] for it in items]).to(device)  # (n,)
        tile_mask = torch.cat([it.inputs["aspect_ratio_mask"][0] for it in items]).to(device)  # (n, tiles)
        states = self.multi_modal_projector(self.vision_model(pixels, ratio, tile_mask))  # (n, tiles, 1 + p, hidden)
        layers = [self.language_model.model.layers[i].cross_attn for i in self.language_model.cross_layers]
        out = []
        for s, mask in zip(states, tile_mask):
            rows = s[: int(mask.sum())].flatten(0, 1)  # padding tiles are masked keys in transformers
            out.append(torch.stack([layer.image_kv(rows) for layer in layers]))
        return out
