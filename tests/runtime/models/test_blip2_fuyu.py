"""BLIP-2 (ViT, Q-Former, OPT), Fuyu (patches through a linear layer into Persimmon) and Janus
(understanding: SigLIP-style tower, aligner, Llama) against
transformers on tiny random checkpoints saved with their PIL image processors and processors:
prompt logprobs (float32, 1e-4) and 16 greedy tokens with one image and two, alone, through
chunks smaller than an image, batched with text and behind a cached prefix; a repeated image
reuses its cached KV and runs no encoder; token layouts equal Blip2Processor's and
FuyuProcessor's (rows closed by |NEWLINE|, then <s>) and JanusProcessor's; BLIP-2 with a T5
language model and a Janus image-generation prompt are refused."""

from __future__ import annotations

import pytest
import torch
from mm_fixtures import random_image
from sgl.runtime.multimodal.random_blip import (
    BLIP2_IMAGE,
    FUYU_IMAGE,
    JANUS_IMAGE,
    save_random_blip2,
    save_random_fuyu,
    save_random_janus,
)
from vlm_references import (
    GREEDY,
    Blip2Reference,
    FuyuReference,
    JanusReference,
    check_alone_and_chunked,
    check_batched_cached_repeated,
)

IMAGES = [random_image(1), random_image(2, (64, 40)), random_image(3, (33, 33))]
FAMILIES = {"blip2": (BLIP2_IMAGE, save_random_blip2, Blip2Reference), "fuyu": (FUYU_IMAGE, save_random_fuyu, FuyuReference),
            "janus": (JANUS_IMAGE, save_random_janus, JanusReference)}


@pytest.fixture(scope="module", params=list(FAMILIES))
def family(request):
    return request.param


@pytest.fixture(scope="module")
def folder(family, tmp_path_factory, default_tokenizer_folder):
    return FAMILIES[family][1](str(tmp_path_factory.mktemp(family)), default_tokenizer_folder)


@pytest.fixture(scope="module")
def reference(family, folder):
    return FAMILIES[family][2](folder)


@pytest.fixture(scope="module")
def prompts(family):
    image, end = FAMILIES[family][0], "<0x04>" if family == "fuyu" else ""  # Fuyu's <boa> ends its prompts
    return f"{image}What is in it?{end}", f"{image}First, then {image} which is brighter?{end}"


def test_parity_alone_and_chunked(engine, chunked, reference, prompts):
    check_alone_and_chunked((engine, chunked), reference, prompts, (IMAGES[:1], IMAGES[1:]))


def test_batched_with_text_behind_a_cached_prefix_and_repeated(engine, reference, prompts):
    check_batched_cached_repeated(engine, reference, prompts, IMAGES, min_prefix=16)


@pytest.mark.parametrize("family", ["blip2"], indirect=True)
def test_blip2_layout_equals_its_processor(family, folder, engine, reference):
    """Blip2Processor's ids (the queries' <image> ids, then the text) equal ours for a prompt
    that starts with <image>, whatever the image's size."""
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(folder, use_fast=False)
    for size in [(40, 56), (200, 30), (16, 300)]:
        img = random_image(7, size)
        theirs = processor(text="What is in it?", images=img, return_tensors="pt")
        ours = reference.inputs(f"{BLIP2_IMAGE}What is in it?", [img])
        assert theirs["input_ids"].tolist() == ours["input_ids"].tolist()
        assert (theirs["pixel_values"] == ours["pixel_values"]).all()
        expanded, mm = engine._media.expand(engine.tokenizer(f"{BLIP2_IMAGE}What is in it?")["input_ids"], [img], [])
        assert len(expanded) == theirs["input_ids"].shape[1] and mm.items[0].offset == 0


def test_blip2_with_t5_is_refused():
    from sgl.runtime.config import ModelConfig
    from sgl.runtime.models.blip2 import Blip2ForConditionalGeneration
    from transformers import Blip2Config, T5Config

    hf = Blip2Config(text_config=T5Config(d_model=32, d_ff=64, num_layers=1, num_heads=2), image_token_index=5,
                     architectures=["Blip2ForConditionalGeneration"])
    with pytest.raises(ValueError, match="encoder-decoder language model .* only decoder-only"):
        Blip2ForConditionalGeneration(ModelConfig.from_hf(hf), 64)


@pytest.mark.parametrize("family", ["fuyu"], indirect=True)
def test_fuyu_layout_equals_its_processor(family, engine, reference, prompts):
    """Rows of patches closed by |NEWLINE|, then <s> (FuyuProcessor's text), and the patches,
    for images smaller and larger than the processor's 32 x 48 px, tall and wide."""
    two = prompts[1]
    for size in [(40, 56), (64, 40), (33, 33), (200, 30), (16, 300), (8, 8)]:
        img = random_image(7, size)
        theirs = reference.inputs(two, [img, img])
        ids = theirs["input_ids"][0].tolist()
        expanded, mm = engine._media.expand(engine.tokenizer(two)["input_ids"], [img, img], [])
        assert len(expanded) == len(ids)
        rows = {it.offset + i for it in mm.items for i, t in enumerate(it.inputs["text_ids"].tolist()) if t < 0}
        assert sorted(rows) == [i for i, t in enumerate(ids) if t == reference.image_token]
        assert all(expanded[i] == t for i, t in enumerate(ids) if i not in rows)  # text, |NEWLINE|, <s>
        ours = torch.cat([it.inputs["pixel_values"][0] for it in mm.items])
        assert torch.equal(ours, theirs["pixel_values"].float())


@pytest.mark.parametrize("family", ["janus"], indirect=True)
def test_janus_layout_and_no_image_generation(family, engine, reference, prompts):
    """JanusProcessor's ids (<begin_of_image>, a row per patch, <end_of_image>) equal ours for
    images of any shape; a prompt asking for an image (<begin_of_image>) is refused, saying
    that generation is out of scope, and the engine keeps serving."""
    two = prompts[1]
    for size in [(40, 56), (200, 30), (16, 300)]:
        img = random_image(7, size)
        ids = reference.inputs(two, [img, img])["input_ids"][0].tolist()
        expanded, mm = engine._media.expand(engine.tokenizer(two)["input_ids"], [img, img], [])
        rows = {it.offset + i for it in mm.items for i in range(it.length)}
        assert sorted(rows) == [i for i, t in enumerate(ids) if t == reference.image_token]
        assert len(expanded) == len(ids) and all(expanded[i] == t for i, t in enumerate(ids) if i not in rows)
    ask = reference.processor(text="Draw a cat.", generation_mode="image")["input_ids"][0].tolist()
    with pytest.raises(ValueError, match="image generation is out of scope"):
        engine.generate(input_ids=ask, sampling_params=GREEDY)
    text = "Still serving text."
    assert engine.generate(text, GREEDY)["output_ids"] == reference.greedy(text, [])


def test_blip2_hub_layout_loads_q_and_v_biases():
    """The hub's BLIP-2 checkpoints keep the ViT's q_bias and v_bias apart (transformers 5 saves
    one qkv.bias with zeros for k); (1, 1, h) / (1, n, h) embeddings become CLIP's shapes."""
    from types import SimpleNamespace

    from sgl.runtime.models.blip2 import Blip2ForConditionalGeneration
    from sgl.runtime.models.opt import OPTForCausalLM

    layer = "vision_model.encoder.layers.0.self_attn."
    q, v = torch.arange(4.0), torch.arange(4.0) + 10
    weights = [(layer + "q_bias", q), (layer + "v_bias", v), ("vision_model.embeddings.class_embedding", torch.ones(1, 1, 4)),
               ("vision_model.embeddings.position_embedding", torch.ones(1, 5, 4)),
               ("language_model.model.decoder.layers.0.fc1.weight", torch.ones(2, 2))]
    out = dict(Blip2ForConditionalGeneration.transform_weights(SimpleNamespace(text_cls=OPTForCausalLM), weights))
    assert torch.equal(out[layer + "qkv.bias"], torch.cat([q, torch.zeros(4), v]))
    assert out["vision_model.embeddings.class_embedding"].shape == (4,)
    assert out["vision_model.embeddings.position_embedding.weight"].shape == (5, 4)
    assert "language_model.model.layers.0.mlp.up_proj.weight" in out


def test_blip2_and_fuyu_put_the_image_before_the_bos():
    """OPT's tokenizer starts a prompt with </s>; Blip2Processor's queries come before it.
    Fuyu's SentencePiece tokenizer starts one with <s>; FuyuProcessor has it after the image."""
    from sgl.runtime.models.blip2 import Blip2ForConditionalGeneration
    from sgl.runtime.models.fuyu import FuyuForCausalLM

    arrange = Blip2ForConditionalGeneration.arrange_prompt
    assert arrange([2, 9, 5, 6], 9, 2) == [9, 2, 5, 6]
    assert arrange([9, 5, 6], 9, 2) == [9, 5, 6] and arrange([2, 5, 9], 9, 2) == [2, 5, 9]
    assert arrange([2, 9, 5], 9, None) == [2, 9, 5]
    assert FuyuForCausalLM.arrange_prompt([2, 9, 5], 9, 2) == [9, 5]  # its <s> comes after the image
    assert FuyuForCausalLM.arrange_prompt([9, 5], 9, 2) == [9, 5]


@pytest.mark.parametrize("family", ["blip2"], indirect=True)
def test_blip2_keeps_its_qformer_in_float32(family, folder):
    """As transformers' _keep_in_fp32_modules: in a bf16 model the queries and the Q-Former
    stay float32, the rest is bf16."""
    from sgl.runtime.config import ModelConfig
    from sgl.runtime.models.blip2 import Blip2ForConditionalGeneration
    from transformers import AutoConfig

    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)
    try:
        m = Blip2ForConditionalGeneration(ModelConfig.from_hf(AutoConfig.from_pretrained(folder)), 64)
    finally:
        torch.set_default_dtype(previous)
    assert m.query_tokens.dtype == m.qformer.encoder.layer[0].crossattention.attention.key.weight.dtype == torch.float32
    assert m.language_projection.weight.dtype == m.vision_model.post_layernorm.weight.dtype == torch.bfloat16
