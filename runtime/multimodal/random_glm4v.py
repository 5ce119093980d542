"""Random GLM-4.1V and GLM-4.5V checkpoints of tiny shape (random_checkpoints.py's
conventions: the default model's tokenizer plus GLM's image/video tokens), saved with
Glm4vImageProcessorPil and a video_preprocessor_config.json (Glm4vVideoProcessor itself needs
torchvision; sgl reads its size bounds)."""

from __future__ import annotations

import json
import os

import torch

from .random_checkpoints import (
    TEXT_VOCAB,
    TINY_TEXT,
    _copy_chat_template,
    tokenizer_with_vision_tokens,
)

GLM_TOKENS = ["<|begin_of_image|>", "<|end_of_image|>", "<|begin_of_video|>", "<|end_of_video|>", "<|image|>", "<|video|>"]
GLM_IMAGE = "<|begin_of_image|><|image|><|end_of_image|>"  # Glm4vForConditionalGeneration.placeholders
GLM_VIDEO = "<|begin_of_video|><|video|><|end_of_video|>"
VIDEO_BOUNDS = {"shortest_edge": 256, "longest_edge": 4 * 4096}  # all frames' pixels together


def save_random_glm4v(folder: str, tokenizer_folder: str, moe: bool = False, seed: int = 0) -> str:
    """A random GLM-4.1V (or GLM-4.5V: 4 experts, top 2, one shared, the first layer dense):
    4 px patches, 2x2 merge, 2-frame temporal patches, a 4x4 learned position table (16 px
    images), partial rotary (half the head) with M-RoPE sections [2, 1, 1]; image pixel
    bounds 256..4096 (2 frames counted, as the processor does)."""
    import transformers
    from transformers.models.glm4v.image_processing_pil_glm4v import Glm4vImageProcessorPil

    tok = tokenizer_with_vision_tokens(tokenizer_folder)
    tok.add_tokens(GLM_TOKENS, special_tokens=True)
    ids = dict(zip(GLM_TOKENS, tok.convert_tokens_to_ids(GLM_TOKENS)))
    text = dict(TINY_TEXT, vocab_size=TEXT_VOCAB, max_position_embeddings=1024, initializer_range=0.2,
                bos_token_id=1, eos_token_id=2, rope_parameters={"rope_type": "default", "rope_theta": 10000.0,
                                                               "partial_rotary_factor": 0.5, "mrope_section": [2, 1, 1]})
    if moe:
        text.update(n_routed_experts=4, num_experts_per_tok=2, moe_intermediate_size=16, n_shared_experts=1,
                    first_k_dense_replace=1, n_group=1, topk_group=1, norm_topk_prob=True, routed_scaling_factor=1.5)
    vision = dict(depth=2, hidden_size=32, intermediate_size=48, num_heads=2, patch_size=4, image_size=16,
                  spatial_merge_size=2, temporal_patch_size=2, out_hidden_size=64, initializer_range=0.2)
    name = "Glm4vMoe" if moe else "Glm4v"
    config = getattr(transformers, f"{name}Config")(
        text_config=text, vision_config=vision, image_token_id=ids["<|image|>"], video_token_id=ids["<|video|>"],
        image_start_token_id=ids["<|begin_of_image|>"], image_end_token_id=ids["<|end_of_image|>"],
        video_start_token_id=ids["<|begin_of_video|>"], video_end_token_id=ids["<|end_of_video|>"],
        architectures=[f"{name}ForConditionalGeneration"])
    torch.manual_seed(seed)
    model = getattr(transformers, f"{name}ForConditionalGeneration")(config).eval()
    with torch.no_grad():  # random norms, biases and the router's correction bias too, so a bug shows
        for p in [*model.parameters(), *(b for n, b in model.named_buffers() if "correction_bias" in n)]:
            if p.dim() == 1 or not p.abs().sum():
                p.copy_(p + 0.2 * torch.randn_like(p))
    model.save_pretrained(folder)
    Glm4vImageProcessorPil(patch_size=4, merge_size=2, temporal_patch_size=2,
                           size={"shortest_edge": 256, "longest_edge": 4096}).save_pretrained(folder)
    with open(os.path.join(folder, "video_preprocessor_config.json"), "w") as f:
        json.dump({"video_processor_type": "Glm4vVideoProcessor", "size": VIDEO_BOUNDS, "patch_size": 4,
                   "merge_size": 2, "temporal_patch_size": 2}, f, indent=2)
    tok.save_pretrained(folder)
    _copy_chat_template(tokenizer_folder, folder)
    return folder
