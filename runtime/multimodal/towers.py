"""The encoders' plain fields (vision towers, Chameleon's VQ tower, audio encoders, BLIP-2's
Q-Former), normalized from a checkpoint's HF config by multimodal/config.py; the tower modules in
runtime/layers read only these."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class VisionTowerConfig:
    """A ViT tower (CLIP/SigLIP-style): patches of `patch_size` over `image_size` squares."""

    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    image_size: int
    patch_size: int
    num_channels: int
    norm_eps: float
    hidden_act: str
    # Qwen2-VL's native-resolution ViT (defaults: a CLIP tower): merge_size x merge_size patches
    # become one decoder token; a patch spans temporal_patch_size frames; the merger's output
    # width; 2.5's window attention (window_size pixels, blocks that attend to the whole image)
    merge_size: int = 1
    temporal_patch_size: int = 1
    out_hidden_size: int = 0
    window_size: int = 0
    full_attention_blocks: tuple[int, ...] = ()
    tokens_per_second: float = 0.0  # 2.5: temporal position step per second of video
    rms_norm: bool = False  # 2.5: RMSNorm (not LayerNorm) in the blocks and the merger
    gated_mlp: bool = False  # 2.5: gate/up/down MLP
    # InternViT: q/k/v biases, RMSNorm over all heads' q and k, hidden_states[-1] LayerNormed
    # (checkpoints without mean pooling)
    attention_bias: bool = True
    qk_norm: bool = False
    norm_last_features: bool = False
    # the vision_config's model_type ("clip_vision_model", "siglip_vision_model", "pixtral", ...):
    # which tower a family builds (layers/vision_siglip.py picks SigLIP or CLIP by it)
    kind: str = ""
    rope_theta: float = 0.0  # Pixtral, Llama 4: the base of the 2-D rope
    adapter_dim: int = 0  # Llama 4: the vision adapter's inner width (its output: out_hidden_size)
    # Qwen3-VL: a learned (side x side) position table interpolated to each grid, a biased patch
    # embedding, and the blocks whose output a DeepStack merger adds into the early LM layers
    position_embeddings: int = 0
    patch_bias: bool = False
    deepstack_layers: tuple[int, ...] = ()
    aligner_depth: int = 0  # Janus: the linear layers of its aligner MLP
    # GLM-4V: no biases on the blocks' attention output and MLP (its merger's inner width: adapter_dim)
    block_bias: bool = True
    # Mllama: tiles of image_size (up to max_num_tiles an image), a gated global encoder of
    # global_layers after the local one, the local layers' outputs concatenated to the last
    # state (intermediate_layers), aspect-ratio ids 1..max_aspect_ratio_id (0: padding)
    max_num_tiles: int = 0
    global_layers: int = 0
    intermediate_layers: tuple[int, ...] = ()
    max_aspect_ratio_id: int = 0

    @property
    def cls_tokens(self) -> int:
        """Tokens the tower puts before the patches (CLIP's class token)."""
        return 1 if self.kind in ("", "clip", "clip_vision_model") else 0

    @property
    def num_patches(self) -> int:
        return (self.image_size // self.patch_size) ** 2


@dataclass(frozen=True)
class VQTowerConfig:
    """Chameleon's VQ-GAN image tokenizer: a conv encoder (levels of channel multipliers, resnet
    blocks, attention at the chosen resolutions and in the middle), then the nearest of
    num_embeddings codes per latent cell; codes map to text ids (vocabulary_map)."""

    resolution: int
    in_channels: int
    base_channels: int
    channel_multiplier: tuple[int, ...]
    num_res_blocks: int
    attn_resolutions: tuple[int, ...]
    mid_attention: bool  # attn_type == "vanilla"
    latent_channels: int
    double_latent: bool
    embed_dim: int
    num_embeddings: int
    code_ids: tuple[int, ...]  # the text id of each code (Chameleon's IMGIMG* tokens)

    @property
    def tokens(self) -> int:
        """Codes (prompt tokens) an image takes: the latent grid."""
        return (self.resolution // 2 ** (len(self.channel_multiplier) - 1)) ** 2


@dataclass(frozen=True)
class AudioTowerConfig:
    """A Whisper-style audio encoder: two convolutions over mel frames (the second stride 2),
    learned positions, pre-norm layers, then (Qwen2-Audio) average pooling by 2."""

    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_mel_bins: int
    max_source_positions: int  # encoder positions: the processor's frames / 2
    hidden_act: str


@dataclass(frozen=True)
class ConformerConfig:
    """Phi-4-multimodal's audio encoder: NeMo-style conv subsampling by time_reduction over
    input_size mel bins, then Conformer blocks (macaron MLPs, attention with a learned relative
    position bias, a causal depthwise conv module)."""

    hidden_size: int
    intermediate_size: int
    num_blocks: int
    num_heads: int
    input_size: int
    time_reduction: int
    conv_channels: int
    kernel_size: int
    ext_pw_out_channel: int
    depthwise_out_channel: int
    depthwise_multiplier: int
    bias_max_distance: int
    bias_symmetric: bool
    chunk_size: int
    activation: str
    conv_activation: str
    glu_activation: str
    subsampling_activation: str


@dataclass(frozen=True)
class QFormerConfig:
    """BLIP-2's Querying Transformer: `num_query_tokens` learned queries through post-LN BERT
    layers, each `cross_every`-th one also cross-attending to the vision tower's states."""

    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    cross_every: int
    encoder_hidden_size: int
    norm_eps: float
    hidden_act: str
    num_query_tokens: int
