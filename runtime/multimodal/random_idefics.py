"""Random Idefics3, SmolVLM and Aria checkpoints of a tiny shape, saved with their real PIL
image processors (and processors where they build without torchvision), over the default
model's tokenizer plus the family's image tokens. Idefics3 / SmolVLM: a SigLIP-like tower of 32
px tiles and 4 px patches, pixel shuffle by 2 (16 tokens a tile), images up to 64 px split into
32 px tiles plus a global image; tokens <fake_token_around_image>, <image>, <global-img>, the 36
<row_r_col_c> tags (SmolVLM's <video> too). Aria: see save_random_aria."""

from __future__ import annotations

from typing import Any

import torch

from .random_checkpoints import TEXT_VOCAB, _copy_chat_template, _tiny_llama

IDEFICS_IMAGE = "<image>"  # what a prompt holds for an image (the processor expands it)
IDEFICS_TOKENS = ["<fake_token_around_image>", IDEFICS_IMAGE, "<end_of_utterance>", "<global-img>",
                  *[f"<row_{r}_col_{c}>" for r in range(1, 7) for c in range(1, 7)]]
SMOLVLM_VIDEO = "<video>"  # SmolVLM's (a tokenizer token; its processor expands it into frames)
IDEFICS_VOCAB = TEXT_VOCAB + 40  # the default model's 49152 tokens, these 40 (41), padding
TILE = 32  # max_image_size: a tile's side (the tower's image_size)


def save_random_idefics3(folder: str, tokenizer_folder: str, family: str = "idefics3", seed: int = 0) -> str:
    """A random Idefics3 (family "idefics3") or SmolVLM ("smolvlm"): vision tower 32 px, 4 px
    patches, 2 layers; scale_factor 2; Llama text; images resized to a 64 px longest edge and
    split into 32 px tiles (up to 2x2 and the global image). Idefics3 is saved with
    Idefics3Processor; SmolVLM with its image processor and tokenizer (SmolVLMProcessor needs
    a torchvision video processor and num2words)."""
    import transformers
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tokenizer_folder)
    tok.add_tokens(IDEFICS_TOKENS + ([SMOLVLM_VIDEO] if family == "smolvlm" else []), special_tokens=True)
    name = {"idefics3": "Idefics3", "smolvlm": "SmolVLM"}[family]
    vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, image_size=TILE,
                  patch_size=4, initializer_range=0.2)
    text = _tiny_llama(tie_word_embeddings=False)
    text.vocab_size = IDEFICS_VOCAB
    config = getattr(transformers, f"{name}Config")(
        vision_config=vision, text_config=text.to_dict(), image_token_id=tok.convert_tokens_to_ids(IDEFICS_IMAGE),
        scale_factor=2, tie_word_embeddings=False, architectures=[f"{name}ForConditionalGeneration"])
    torch.manual_seed(seed)
    model = getattr(transformers, f"{name}ForConditionalGeneration")(config).eval()
    _randomize_norms(model)
    model.save_pretrained(folder)
    module = getattr(transformers.models, family)
    images = getattr(getattr(module, f"image_processing_pil_{family}"), f"{name}ImageProcessorPil")(
        size={"longest_edge": 2 * TILE}, max_image_size={"longest_edge": TILE}, resample=3)
    if family == "idefics3":
        from transformers import Idefics3Processor

        Idefics3Processor(image_processor=images, tokenizer=tok, image_seq_len=16).save_pretrained(folder)
    else:
        images.save_pretrained(folder)
        tok.save_pretrained(folder)
    _copy_chat_template(tokenizer_folder, folder)
    return folder


def _randomize_norms(model: Any) -> None:
    """LayerNorm / RMSNorm weights and biases made random (transformers sets them to 1 and 0), so
    the parity test sees the vision tower's post_layernorm and every norm used."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.add_(torch.randn_like(p) * 0.2)


ARIA_IMAGE = "<|img|>"  # Aria's placeholder (the processor repeats it once per projector query)


def save_random_aria(folder: str, tokenizer_folder: str, seed: int = 0) -> str:
    """A random Aria: an Idefics3 tower of 980 px positions and 70 px patches (a 14x14 table);
    images resized to a 980 px longest edge (AriaProcessor's) and padded, with a pixel mask; 12
    projector queries for 196 patches (6 for 49); a two-layer MoE text model (4 experts, top 2,
    2 shared experts, experts 16 wide); saved with AriaProcessor and its PIL image processor."""
    from transformers import AriaConfig, AriaForConditionalGeneration, AriaProcessor, AutoTokenizer
    from transformers.models.aria.image_processing_pil_aria import AriaImageProcessorPil

    tok = AutoTokenizer.from_pretrained(tokenizer_folder, extra_special_tokens={"image_token": ARIA_IMAGE})
    tok.add_tokens([ARIA_IMAGE], special_tokens=True)
    vision = dict(model_type="idefics3_vision", hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                  num_attention_heads=2, image_size=980, patch_size=70, initializer_range=0.2)
    text = dict(vocab_size=TEXT_VOCAB, hidden_size=64, intermediate_size=16, num_hidden_layers=2, num_attention_heads=4,
                num_key_value_heads=2, moe_num_experts=4, moe_topk=2, moe_num_shared_experts=2,
                max_position_embeddings=1024, initializer_range=0.2, bos_token_id=1, eos_token_id=2, pad_token_id=0)
    config = AriaConfig(vision_config=vision, text_config=text, image_token_index=tok.convert_tokens_to_ids(ARIA_IMAGE),
                        projector_patch_to_query_dict={49: 6, 196: 12}, architectures=["AriaForConditionalGeneration"])
    torch.manual_seed(seed)
    model = AriaForConditionalGeneration(config).eval()
    _randomize_norms(model)
    with torch.no_grad():  # the learned queries start at zeros: random, so each query differs
        model.model.multi_modal_projector.query.normal_(0, 1.0)
    model.save_pretrained(folder)
    images = AriaImageProcessorPil(max_image_size=980, min_image_size=140)
    AriaProcessor(image_processor=images, tokenizer=tok, size_conversion={490: 6, 980: 12}).save_pretrained(folder)
    _copy_chat_template(tokenizer_folder, folder)
    return folder
