"""InternVL, Mistral3, LLaVA with a Pixtral tower and Llama 4 against transformers on tiny
random checkpoints saved with their PIL image processors (GotOcr2's: 32 px tiles, 1..4 tiles
and a thumbnail; Pixtral's: any size fitted into 56 px; Llama 4's, ported to PIL in
multimodal/llama4_images.py: 32 px tiles on the best canvas of up to 4, and a global one): prompt logprobs (float32, 1e-4) and 16
greedy tokens with one image and two of different sizes, alone, through chunks smaller than
an image, batched with text and behind a cached prefix; a repeated image reuses its cached KV
and runs no encoder; token layouts (<img> ... </img>, rows closed by [IMG_BREAK] / [IMG_END],
Llama 4's tile separators) equal transformers' processors' for several sizes; vLLM's PixtralForConditionalGeneration
name serves the same folder. (Video: transformers' InternVL config has no video token id.)"""

from __future__ import annotations

import json
import os
import shutil

import pytest
import torch
from mm_fixtures import random_image
from sgl.runtime import Engine
from sgl.runtime.multimodal.random_intern import (
    INTERN_IMAGE,
    LLAMA4_IMAGE,
    PIXTRAL_IMAGE,
    save_random_internvl,
    save_random_llama4,
    save_random_pixtral,
)
from vlm_references import (
    InternVLReference,
    Llama4Reference,
    PixtralReference,
    check,
    check_batched_cached_repeated,
    run,
)

IMAGES = [random_image(1), random_image(2, (64, 40)), random_image(3, (33, 33))]
FAMILIES = {"internvl": (INTERN_IMAGE, InternVLReference), "mistral3": (PIXTRAL_IMAGE, PixtralReference),
            "llava-pixtral": (PIXTRAL_IMAGE, PixtralReference), "llama4": (LLAMA4_IMAGE, Llama4Reference)}


@pytest.fixture(scope="module", params=list(FAMILIES))
def family(request):  # one module-scoped checkpoint per family (a test may name its family: indirect)
    return request.param


@pytest.fixture(scope="module")
def folder(family, tmp_path_factory, default_tokenizer_folder):
    out = str(tmp_path_factory.mktemp(family))
    if family in ("internvl", "llama4"):
        return (save_random_internvl if family == "internvl" else save_random_llama4)(out, default_tokenizer_folder)
    return save_random_pixtral(out, default_tokenizer_folder, family.removesuffix("-pixtral"))


@pytest.fixture(scope="module")
def reference(family, folder):
    return FAMILIES[family][1](folder)


@pytest.fixture(scope="module")
def prompts(family):
    image = FAMILIES[family][0]
    return f"A photo: {image} What is in it?", f"First {image} then {image}: which is brighter?"


def test_parity_alone_and_chunked(engine, chunked, reference, prompts):
    for prompt, images in zip(prompts, (IMAGES[:1], IMAGES[1:])):
        for e in (engine, chunked):
            e.flush_cache()
            check(run(e, prompt, images), reference, prompt, images)
            e.check_kv()


def test_batched_with_text_behind_a_cached_prefix_and_repeated(engine, reference, prompts):
    check_batched_cached_repeated(engine, reference, *prompts, IMAGES, random_image(5))


def test_token_layout_matches_transformers(engine, reference, prompts):
    two = prompts[1]
    for size in [(40, 56), (64, 40), (33, 33), (200, 30), (16, 300), (90, 90)]:
        img = random_image(7, size)
        ids = reference.inputs(two, [img, img])["input_ids"][0].tolist()
        expanded, mm = engine._media.expand(engine.tokenizer(two)["input_ids"], [img, img], [])
        assert len(expanded) == len(ids)
        rows = {it.offset + i for it in mm.items for i, t in enumerate(it.inputs["text_ids"].tolist()) if t < 0}
        assert sorted(rows) == [i for i, t in enumerate(ids) if t == reference.image_token]
        assert all(expanded[i] == t for i, t in enumerate(ids) if i not in rows)  # text, <img>, [IMG_BREAK]


@pytest.mark.parametrize("family", ["llava-pixtral"], indirect=True)
def test_vllm_pixtral_name_serves_the_folder(family, folder, reference, prompts, tmp_path):
    alias = str(tmp_path / "pixtral")
    shutil.copytree(folder, alias)
    with open(os.path.join(alias, "config.json")) as f:
        config = json.load(f)
    config["architectures"] = ["PixtralForConditionalGeneration"]
    with open(os.path.join(alias, "config.json"), "w") as f:
        json.dump(config, f)
    with Engine(alias, dtype="float32") as e:
        assert e._media.model_cls.__name__ == "LlavaPixtralForConditionalGeneration"
        check(run(e, prompts[0], IMAGES[:1]), reference, prompts[0], IMAGES[:1])


def transformers_llama4_canvas():
    """transformers' own canvas functions of Llama4ImageProcessor, read from its source (the
    module imports torchvision, which is not installed): (supported, best_fit, fit)."""
    import ast
    import inspect
    import math
    from collections import defaultdict
    from functools import lru_cache

    import torch
    import transformers
    from transformers.image_utils import SizeDict

    path = os.path.join(os.path.dirname(inspect.getfile(transformers)), "models", "llama4", "image_processing_llama4.py")
    with open(path) as f:
        tree = ast.parse(f.read())
    names = {"get_factors", "find_supported_resolutions", "get_best_fit", "get_max_res_without_distortion"}
    scope = {"torch": torch, "math": math, "defaultdict": defaultdict, "lru_cache": lru_cache, "SizeDict": SizeDict}
    exec(compile(ast.Module([n for n in tree.body if getattr(n, "name", None) in names], []), path, "exec"), scope)
    return scope["find_supported_resolutions"], scope["get_best_fit"], scope["get_max_res_without_distortion"]


def test_llama4_canvases_equal_transformers():
    from sgl.runtime.multimodal.llama4_images import (
        best_canvas,
        fit_without_distortion,
        supported_canvases,
    )
    from transformers.image_utils import SizeDict

    supported, best_fit, fit = transformers_llama4_canvas()
    for tiles in (1, 4, 16):
        canvases = supported(tiles, SizeDict(height=336, width=336))
        assert supported_canvases(tiles, 336) == [tuple(c) for c in canvases]
        for h, w in [(40, 56), (336, 336), (200, 900), (1000, 300), (33, 33), (700, 701), (2000, 1500)]:
            ours = best_canvas(h, w, supported_canvases(tiles, 336), False)
            assert ours == tuple(int(v) for v in best_fit((h, w), torch.tensor(canvases)))
            assert fit_without_distortion(h, w, *ours) == fit((h, w), ours)
