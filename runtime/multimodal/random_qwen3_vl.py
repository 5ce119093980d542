"""Random Qwen3-VL and Qwen3-VL-MoE checkpoints of tiny shape (random_checkpoints.py's
conventions: the default model's tokenizer plus Qwen's vision tokens, Qwen2-VL's PIL image
processor; Qwen3VLProcessor needs torchvision for its video processor)."""

from __future__ import annotations

import torch

from .random_checkpoints import (
    QWEN_TOKENS,
    TEXT_VOCAB,
    TINY_TEXT,
    _copy_chat_template,
    tokenizer_with_vision_tokens,
)


def save_random_qwen3_vl(folder: str, tokenizer_folder: str, moe: bool = False, seed: int = 0) -> str:
    """A random Qwen3-VL (or -MoE: 4 experts, top 2) of tiny shape (experts 16 wide: 2I != hidden, so a transposed expert tensor shows): 4 px patches, 2x2 merge,
    2-frame temporal patches, a 4x4 learned position table, DeepStack from both tower blocks
    into the first two decoder layers, interleaved M-RoPE; pixel bounds 256..4096."""
    import transformers
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    tok = tokenizer_with_vision_tokens(tokenizer_folder, qwen=True)
    ids = tok.convert_tokens_to_ids(QWEN_TOKENS)
    text = dict(TINY_TEXT, head_dim=16, vocab_size=TEXT_VOCAB, max_position_embeddings=1024, initializer_range=0.2,
                bos_token_id=1, eos_token_id=2, rope_parameters={"rope_type": "default", "rope_theta": 10000.0,
                                                               "mrope_section": [2, 3, 3], "mrope_interleaved": True})
    if moe:
        text.update(num_experts=4, num_experts_per_tok=2, moe_intermediate_size=16, norm_topk_prob=True,
                    decoder_sparse_step=1, mlp_only_layers=[])
    vision = dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, patch_size=4, spatial_merge_size=2,
                  temporal_patch_size=2, out_hidden_size=64, num_position_embeddings=16, deepstack_visual_indexes=[0, 1],
                  initializer_range=0.2)
    name = "Qwen3VLMoe" if moe else "Qwen3VL"
    config = getattr(transformers, f"{name}Config")(
        text_config=text, vision_config=vision, vision_start_token_id=ids[0], vision_end_token_id=ids[1],
        image_token_id=ids[2], video_token_id=ids[3], architectures=[f"{name}ForConditionalGeneration"])
    torch.manual_seed(seed)
    model = getattr(transformers, f"{name}ForConditionalGeneration")(config).eval()
    with torch.no_grad():  # random norms and biases too (their init is ones / zeros), so a bug shows
        for p in model.parameters():
            if p.dim() == 1:
                p.copy_(p + 0.2 * torch.randn_like(p))
    model.save_pretrained(folder)
    Qwen2VLImageProcessorPil(patch_size=4, merge_size=2, temporal_patch_size=2,
                             size={"shortest_edge": 256, "longest_edge": 4096}).save_pretrained(folder)
    tok.save_pretrained(folder)
    _copy_chat_template(tokenizer_folder, folder)
    return folder
