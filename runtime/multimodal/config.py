"""MultimodalConfig: a multimodal checkpoint's media fields, normalized once from its HF config
(model code reads these plain fields, never the HF config's spellings); the encoders' own fields
are the dataclasses of towers.py."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .towers import (
    AudioTowerConfig,
    ConformerConfig,
    QFormerConfig,
    VisionTowerConfig,
    VQTowerConfig,
)


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
    # InternVL, Llama 4, Idefics3 (1 / scale_factor): pixel shuffle of the patch grid by this ratio
    # (0.5: 2x2 patches one token)
    downsample_ratio: float = 0.0
    # Gemma 3: the token a prompt holds for an image (<start_of_image>), when it is not the one
    # the image's positions hold; its expansion is wrapped by the model class's `image_wrap`
    prompt_image_token_id: int | None = None
    tokens_per_image: int = 0  # Gemma 3's mm_tokens_per_image (the tower's patches pooled to these)
    # Aria's projector_patch_to_query_dict: (tower patches of a crop, the crop's tokens) pairs
    query_counts: tuple[tuple[int, int], ...] = ()
    # audio (Qwen2-Audio): the placeholder token and the encoder
    audio_token_id: int | None = None
    audio: AudioTowerConfig | None = None
    qformer: QFormerConfig | None = None  # BLIP-2: each image is num_query_tokens Q-Former outputs
    vq: VQTowerConfig | None = None  # Chameleon: images become codes of a VQ-GAN (tower is None)
    conformer: ConformerConfig | None = None  # Phi-4-multimodal's audio encoder (audio is None)

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
    if getattr(hf, "model_type", None) == "phi4_multimodal":
        return _phi4mm(hf)
    if vision is None and getattr(hf, "audio_config", None) is not None:
        return audio_multimodal_config(hf)
    if vision is None and getattr(hf, "model_type", None) == "fuyu":
        return _fuyu(hf)
    if vision is None and getattr(hf, "vq_config", None) is not None:
        return vq_multimodal_config(hf)
    if vision is None or _first(hf, "image_token_id", "image_token_index", "video_token_id", "video_token_index") is None:
        return None
    layers = _first(hf, "vision_feature_layer")
    layers = (-1,) if layers is None else tuple(layers) if isinstance(layers, (list, tuple)) else (int(layers),)
    tower = _qwen_tower(vision) if hasattr(vision, "spatial_merge_size") else VisionTowerConfig(**{
        **dict(hidden_size=vision.hidden_size, intermediate_size=_first(vision, "intermediate_size") or 0,
               num_layers=vision.num_hidden_layers, num_heads=vision.num_attention_heads,
               image_size=_side(vision.image_size), patch_size=_side(vision.patch_size),
               num_channels=_first(vision, "num_channels") or 3, norm_eps=_first(vision, "layer_norm_eps") or 1e-5,
               hidden_act=_first(vision, "hidden_act") or "quick_gelu", rms_norm=_first(vision, "norm_type") == "rms_norm",
               attention_bias=bool(getattr(vision, "attention_bias", True)),
               qk_norm=bool(getattr(vision, "use_qk_norm", False)),
               norm_last_features=getattr(vision, "use_mean_pooling", True) is False,
               kind=_first(vision, "model_type") or "", merge_size=_first(hf, "spatial_merge_size") or 1,
               rope_theta=float((_first(vision, "rope_parameters") or {}).get("rope_theta") or 0.0),
               out_hidden_size=_first(vision, "projector_output_dim") or 0, adapter_dim=_first(vision, "projector_input_dim") or 0),
        **(_pixtral_fields(vision) if _first(vision, "model_type") == "pixtral" else {}),
        **(_janus_fields(vision) if _first(vision, "model_type") == "janus_vision_model" else {}),
        **(_mllama_fields(vision) if _first(vision, "model_type") == "mllama_vision_model" else {})})
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
        pool_stride=_first(hf, "spatial_pool_stride") or 0, pool_mode=_first(hf, "spatial_pool_mode") or "average",
        downsample_ratio=float(_first(hf, "downsample_ratio") or _first(vision, "pixel_shuffle_ratio") or 0.0)
        or (1 / hf.scale_factor if _first(hf, "scale_factor") else 0.0),  # Idefics3's shuffle by scale_factor
        prompt_image_token_id=_first(hf, "boi_token_id", "boi_token_index"),
        tokens_per_image=_first(hf, "mm_tokens_per_image") or 0,
        qformer=_qformer(hf),
        query_counts=tuple((int(k), int(v)) for k, v in (_first(hf, "projector_patch_to_query_dict") or {}).items()))


def _fuyu(hf: Any) -> MultimodalConfig:
    """Fuyu has no vision tower: its image patches go through one linear layer into the
    decoder; the "tower" holds only the patch size and channels."""
    tower = VisionTowerConfig(hidden_size=0, intermediate_size=0, num_layers=0, num_heads=0, image_size=hf.image_size,
                              patch_size=hf.patch_size, num_channels=hf.num_channels, norm_eps=0.0, hidden_act="",
                              kind="fuyu")
    return MultimodalConfig(image_token_id=hf.image_token_id, video_token_id=None, tower=tower, feature_layers=(),
                            select_strategy="default", projector_act="", projector_bias=True)


def _qformer(hf: Any) -> QFormerConfig | None:
    """BLIP-2's qformer_config (with the root's num_query_tokens), else None."""
    q = getattr(hf, "qformer_config", None)
    if q is None:
        return None
    return QFormerConfig(hidden_size=q.hidden_size, intermediate_size=q.intermediate_size,
                         num_layers=q.num_hidden_layers, num_heads=q.num_attention_heads,
                         cross_every=q.cross_attention_frequency, encoder_hidden_size=q.encoder_hidden_size,
                         norm_eps=q.layer_norm_eps, hidden_act=q.hidden_act, num_query_tokens=hf.num_query_tokens)


def _pixtral_fields(vision: Any) -> dict[str, Any]:
    """Pixtral's tower: RMSNorm (eps 1e-5), gated MLP, no biases, 2-D rope of base rope_theta."""
    rope = _first(vision, "rope_parameters") or {}
    return dict(rms_norm=True, gated_mlp=True, attention_bias=False, norm_eps=1e-5,
                rope_theta=float(rope.get("rope_theta") or _first(vision, "rope_theta") or 10000.0))


def _janus_fields(vision: Any) -> dict[str, Any]:
    """Janus's SigLIP-style tower: an MLP of hidden * mlp_ratio, an aligner of `depth` linear
    layers into projection_dim (the text width)."""
    return dict(intermediate_size=int(vision.hidden_size * vision.mlp_ratio), out_hidden_size=vision.projection_dim,
                aligner_depth=vision.depth)
def _mllama_fields(vision: Any) -> dict[str, Any]:
    """Mllama's tower: tiles, a global encoder, intermediate-layer features; no attention biases."""
    return dict(attention_bias=False, norm_eps=vision.norm_eps, max_num_tiles=vision.max_num_tiles,
                global_layers=vision.num_global_layers, intermediate_layers=tuple(vision.intermediate_layers_indices),
                max_aspect_ratio_id=vision.max_aspect_ratio_id)


def _side(size: Any) -> int:
    """A square's side given as an int or (height, width) (InternViT's image and patch sizes)."""
    if isinstance(size, (list, tuple)):
        if len(set(size)) != 1:
            raise ValueError(f"vision_config: a non-square size {tuple(size)} is not supported")
        return int(size[0])
    return int(size)


def _qwen_tower(vision: Any) -> VisionTowerConfig:
    """Qwen2-VL's vision config (embed_dim wide, hidden_size = the merger's output) or 2.5's
    (hidden_size wide, out_hidden_size the output, window attention)."""
    if str(_first(vision, "model_type") or "").startswith("glm4v"):
        return _glm4v_tower(vision)
    qwen3 = _first(vision, "num_position_embeddings") is not None
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
        rms_norm=not hasattr(vision, "embed_dim") and not qwen3, gated_mlp=not hasattr(vision, "embed_dim") and not qwen3,
        position_embeddings=int(_first(vision, "num_position_embeddings") or 0), patch_bias=qwen3,
        deepstack_layers=tuple(_first(vision, "deepstack_visual_indexes") or ()))


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


def _glm4v_tower(vision: Any) -> VisionTowerConfig:
    """GLM-4.1V / 4.5V's tower: Qwen2-VL's patches and 2-D rope with RMSNorm blocks whose gated
    MLP is out_hidden_size wide (intermediate_size is the merger's), a learned position table
    over image_size / patch_size squares, and a conv downsample before the merger."""
    side = _side(vision.image_size) // _side(vision.patch_size)
    rope = _first(vision, "rope_parameters") or {}
    return VisionTowerConfig(
        hidden_size=vision.hidden_size, intermediate_size=vision.out_hidden_size, num_layers=vision.depth,
        num_heads=vision.num_heads, image_size=_side(vision.image_size), patch_size=_side(vision.patch_size),
        num_channels=_first(vision, "in_channels") or 3, norm_eps=float(vision.rms_norm_eps),
        hidden_act=vision.hidden_act, merge_size=vision.spatial_merge_size,
        temporal_patch_size=vision.temporal_patch_size, out_hidden_size=vision.out_hidden_size, rms_norm=True,
        gated_mlp=True, attention_bias=bool(vision.attention_bias), block_bias=False, kind=vision.model_type,
        rope_theta=float(rope.get("rope_theta") or 10000.0), position_embeddings=side * side, patch_bias=True,
        adapter_dim=vision.intermediate_size)
def vq_multimodal_config(hf: Any) -> MultimodalConfig | None:
    """Chameleon's config: vq_config, and a vocabulary_map that names <image> and the codes'
    tokens IMGIMG<digits as letters A-J>Z; else None."""
    vocab = _first(hf, "vocabulary_map") or {}
    if "<image>" not in vocab:
        return None
    v = hf.vq_config
    digits = {chr(ord("A") + i): str(i) for i in range(10)}
    codes = {int("".join(digits.get(ch, ch) for ch in name[len("IMGIMG"):-1])): i
             for name, i in vocab.items() if name.startswith("IMGIMG")}
    if sorted(codes) != list(range(v.num_embeddings)):
        raise ValueError(f"vocabulary_map: names {len(codes)} IMGIMG codes, vq_config.num_embeddings is {v.num_embeddings}")
    vq = VQTowerConfig(resolution=v.resolution, in_channels=v.in_channels, base_channels=v.base_channels,
                       channel_multiplier=tuple(v.channel_multiplier), num_res_blocks=v.num_res_blocks,
                       attn_resolutions=tuple(v.attn_resolutions or ()), mid_attention=v.attn_type == "vanilla",
                       latent_channels=v.latent_channels, double_latent=bool(v.double_latent), embed_dim=v.embed_dim,
                       num_embeddings=v.num_embeddings, code_ids=tuple(codes[k] for k in range(v.num_embeddings)))
    return MultimodalConfig(image_token_id=vocab["<image>"], video_token_id=None, tower=None, feature_layers=(),
                            select_strategy="default", projector_act="gelu", projector_bias=False, vq=vq)


def _phi4mm(hf: Any) -> MultimodalConfig:
    """Phi-4-multimodal: the image token in vision_config, the audio token in audio_config; a
    SigLIP-style tower whose hidden_states[feature_layer] are used, and a Conformer."""
    v, a = hf.vision_config, hf.audio_config
    tower = VisionTowerConfig(hidden_size=v.hidden_size, intermediate_size=v.intermediate_size,
                              num_layers=v.num_hidden_layers, num_heads=v.num_attention_heads,
                              image_size=_side(v.image_size), patch_size=_side(v.patch_size),
                              num_channels=v.num_channels, norm_eps=v.layer_norm_eps, hidden_act=v.hidden_act,
                              kind=v.model_type)
    conformer = ConformerConfig(
        hidden_size=a.hidden_size, intermediate_size=a.intermediate_size, num_blocks=a.num_blocks,
        num_heads=a.num_attention_heads, input_size=a.input_size, time_reduction=a.time_reduction,
        conv_channels=a.nemo_conv_channels, kernel_size=a.kernel_size, ext_pw_out_channel=a.ext_pw_out_channel,
        depthwise_out_channel=a.depthwise_separable_out_channel, depthwise_multiplier=a.depthwise_multiplier,
        bias_max_distance=a.bias_max_distance, bias_symmetric=bool(a.bias_symmetric), chunk_size=a.chunk_size,
        activation=a.activation, conv_activation=a.conv_activation, glu_activation=a.conv_glu_type,
        subsampling_activation=a.nemo_activation)
    return MultimodalConfig(image_token_id=v.image_token_id, video_token_id=None, tower=tower,
                            feature_layers=(int(v.feature_layer),), select_strategy="default", projector_act="gelu",
                            projector_bias=True, audio_token_id=a.audio_token_id, conformer=conformer)
