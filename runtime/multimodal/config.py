"""MultimodalConfig: a vision-language checkpoint's vision fields, normalized once from its HF
config (model code reads these plain fields, never the HF config's spellings)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


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

    @property
    def num_patches(self) -> int:
        return (self.image_size // self.patch_size) ** 2


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
class MultimodalConfig:
    image_token_id: int | None  # the prompt token each image's placeholder positions hold
    video_token_id: int | None
    tower: VisionTowerConfig | None  # None: an audio-only model
    # hidden_states index of each layer whose output is used (concatenated in order), e.g. (-2,)
    feature_layers: tuple[int, ...]
    select_strategy: str  # "default": drop the CLS token; "full": keep it
    projector_act: str
    projector_bias: bool
    # tokens around each image/video's placeholder in prompts (Qwen2-VL's vision_start/end)
    wrap_token_ids: tuple[int, int] | None = None
    # LLaVA-NeXT's anyres: the (height, width) canvases an image may be tiled into
    grid_pinpoints: tuple[tuple[int, int], ...] = ()
    # LLaVA-OneVision's "anyres_max_N": an unpadded grid of more than N tiles' patches shrinks
    max_tiles: int = 0
    # LLaVA-NeXT-Video: each frame's patch grid pooled (average or max) with this stride
    pool_stride: int = 0
    pool_mode: str = "average"
    # audio (Qwen2-Audio): the placeholder token and the encoder
    audio_token_id: int | None = None
    audio: AudioTowerConfig | None = None

    def __post_init__(self) -> None:
        if self.select_strategy not in ("default", "full"):
            raise ValueError(f"vision_feature_select_strategy={self.select_strategy!r}: use default or full")

    @property
    def takes_images(self) -> bool:
        return self.image_token_id is not None

    @property
    def takes_video(self) -> bool:
        return self.video_token_id is not None

    @property
    def takes_audio(self) -> bool:
        return self.audio_token_id is not None


def _first(hf: Any, *names: str) -> Any:
    for name in names:
        value = getattr(hf, name, None)
        if value is not None:
            return value
    return None


def multimodal_config(hf: Any) -> MultimodalConfig | None:
    """The vision fields of a root HF config that has a `vision_config` and an image or video
    placeholder token (a vision-language model), else None: a dual encoder such as CLIPModel has
    a vision config but no placeholder, and serves only its text side."""
    vision = getattr(hf, "vision_config", None)
    if vision is None and getattr(hf, "audio_config", None) is not None:
        return audio_multimodal_config(hf)
    if vision is None or _first(hf, "image_token_id", "image_token_index", "video_token_id", "video_token_index") is None:
        return None
    layers = _first(hf, "vision_feature_layer")
    layers = (-1,) if layers is None else tuple(layers) if isinstance(layers, (list, tuple)) else (int(layers),)
    tower = _qwen_tower(vision) if hasattr(vision, "spatial_merge_size") else VisionTowerConfig(
        hidden_size=vision.hidden_size, intermediate_size=vision.intermediate_size,
        num_layers=vision.num_hidden_layers, num_heads=vision.num_attention_heads,
        image_size=vision.image_size, patch_size=vision.patch_size,
        num_channels=_first(vision, "num_channels") or 3,
        norm_eps=_first(vision, "layer_norm_eps") or 1e-5, hidden_act=_first(vision, "hidden_act") or "quick_gelu")
    return MultimodalConfig(
        image_token_id=_first(hf, "image_token_id", "image_token_index"),
        video_token_id=_first(hf, "video_token_id", "video_token_index"),
        tower=tower, feature_layers=layers,
        select_strategy=_first(hf, "vision_feature_select_strategy") or "default",
        projector_act=_first(hf, "projector_hidden_act") or "gelu",
        projector_bias=bool(getattr(hf, "multimodal_projector_bias", True)),
        wrap_token_ids=(hf.vision_start_token_id, hf.vision_end_token_id)
        if _first(hf, "vision_start_token_id") is not None and _first(hf, "vision_end_token_id") is not None else None,
        grid_pinpoints=tuple(tuple(p) for p in _first(hf, "image_grid_pinpoints") or ()),
        max_tiles=int(str(_first(hf, "vision_aspect_ratio") or "0").removeprefix("anyres_max_") or 0),
        pool_stride=_first(hf, "spatial_pool_stride") or 0, pool_mode=_first(hf, "spatial_pool_mode") or "average")


def _qwen_tower(vision: Any) -> VisionTowerConfig:
    """Qwen2-VL's vision config (embed_dim wide, hidden_size = the merger's output) or 2.5's
    (hidden_size wide, out_hidden_size the output, window attention)."""
    if hasattr(vision, "embed_dim"):  # Qwen2-VL
        width, out = vision.embed_dim, vision.hidden_size
        inner = int(width * vision.mlp_ratio)
    else:
        width, out, inner = vision.hidden_size, vision.out_hidden_size, vision.intermediate_size
    return VisionTowerConfig(
        hidden_size=width, intermediate_size=inner, num_layers=vision.depth, num_heads=vision.num_heads,
        image_size=0, patch_size=vision.patch_size, num_channels=_first(vision, "in_channels", "in_chans") or 3,
        norm_eps=1e-6, hidden_act=vision.hidden_act, merge_size=vision.spatial_merge_size,
        temporal_patch_size=vision.temporal_patch_size, out_hidden_size=out,
        window_size=_first(vision, "window_size") or 0,
        full_attention_blocks=tuple(_first(vision, "fullatt_block_indexes") or ()),
        tokens_per_second=float(_first(vision, "tokens_per_second") or 0.0),
        rms_norm=not hasattr(vision, "embed_dim"), gated_mlp=not hasattr(vision, "embed_dim"))


def audio_multimodal_config(hf: Any) -> MultimodalConfig | None:
    """An audio-language config (Qwen2-Audio: `audio_config`, `audio_token_index`), else None."""
    a, token = hf.audio_config, _first(hf, "audio_token_id", "audio_token_index")
    if token is None:
        return None
    tower = AudioTowerConfig(
        hidden_size=a.d_model, intermediate_size=a.encoder_ffn_dim, num_layers=a.encoder_layers,
        num_heads=a.encoder_attention_heads, num_mel_bins=a.num_mel_bins,
        max_source_positions=a.max_source_positions, hidden_act=a.activation_function)
    return MultimodalConfig(image_token_id=None, video_token_id=None, tower=None, feature_layers=(),
                            select_strategy="default", projector_act="gelu", projector_bias=True,
                            audio_token_id=token, audio=tower)
