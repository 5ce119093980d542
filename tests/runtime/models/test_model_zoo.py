"""Every registered architecture against transformers, on a tiny random checkpoint in float32:
prompt logprobs within 1e-4 and 16 identical greedy tokens, for a prompt longer than the sliding
window prefilled in chunks, and for a batch of 3 prompts that share a cached prefix; in bf16
(packed weights where the CPU has AMX) near the float32 reference. Also: the table in
docs/models.md is the one the registry generates."""

from __future__ import annotations

import os
import random

import pytest
import torch
from llama_fixtures import Reference, save_tiny_checkpoint
from sgl.runtime import Engine
from sgl.runtime.models import REGISTRY, get_model_class, markdown_table
from zoo_configs import VLLM_NAMES, checkpoint_edit, tiny_config

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
NEW_TOKENS = 16
GREEDY = {"max_new_tokens": NEW_TOKENS, "temperature": 0, "ignore_eos": True}


# text generation models; pooling models (BertModel, ...) and vision-language models (LLaVA,
# Qwen2-VL: a `modalities` attribute) have their own tests (test_bert.py, test_llava*.py, test_qwen2_vl.py)
GENERATORS = sorted(a for a in REGISTRY if getattr(get_model_class(a), "task", "generate") == "generate"
                    and not hasattr(get_model_class(a), "modalities") and a not in VLLM_NAMES)


def test_vllm_names_serve_the_same_model():
    """An architecture registered under vLLM's spelling too runs the same class (so the parity
    tests of the transformers name cover it) under its own name."""
    for alias, name in VLLM_NAMES.items():
        cls = get_model_class(alias)
        assert cls.__name__ == alias and issubclass(cls, get_model_class(name)) and cls.__dict__.keys() <= {
            "__module__", "__doc__", "__qualname__", "__firstlineno__", "__static_attributes__"}, alias


@pytest.fixture(scope="module", params=GENERATORS)
def zoo(request, tmp_path_factory, default_tokenizer_folder):
    """(folder, transformers reference) of one architecture, built once."""
    folder = str(tmp_path_factory.mktemp(request.param))
    save_tiny_checkpoint(tiny_config(request.param), folder, default_tokenizer_folder,
                         edit=checkpoint_edit(request.param))
    return folder, Reference(folder)


def tokens(n: int, seed: int) -> list[int]:
    rng = random.Random(seed)
    return [rng.randrange(3, 40000) for _ in range(n)]


def assert_logprobs(result: dict, ids: list[int], start: int, ref: Reference) -> None:
    """Our input logprobs of ids[start + 1:] equal transformers'."""
    rows = result["meta_info"]["input_token_logprobs"]
    assert [r[1] for r in rows] == ids[start:]
    ours = torch.tensor([r[0] for r in rows if r[0] is not None])
    torch.testing.assert_close(ours, ref.prompt_logprobs(ids)[-len(ours):], atol=1e-4, rtol=0)


def test_parity(zoo):
    folder, ref = zoo
    with Engine(folder, dtype="float32", max_total_tokens=4096, chunked_prefill_size=16) as engine:
        # alone: 37 tokens, prefilled in chunks of 16, past every sliding window
        ids = tokens(37, seed=1)
        res = engine.generate(input_ids=ids, sampling_params=GREEDY, return_logprob=True)
        assert_logprobs(res, ids, 0, ref)
        assert res["output_ids"] == ref.greedy(ids, NEW_TOKENS)

        # a batch of 3 that shares a cached prefix
        prefix = tokens(20, seed=2)
        engine.generate(input_ids=prefix, sampling_params={"max_new_tokens": 0})
        batch = [prefix + tokens(n, seed=3 + n) for n in (3, 7, 12)]
        results = engine.generate(input_ids=batch, sampling_params=GREEDY, return_logprob=True,
                                  logprob_start_len=len(prefix))
        for ids, res in zip(batch, results):
            assert res["meta_info"]["cached_tokens"] > 0
            assert_logprobs(res, ids, len(prefix), ref)
            assert res["output_ids"] == ref.greedy(ids, NEW_TOKENS)
        engine.check_kv()


def test_bfloat16_with_packed_weights_stays_near_the_float32_reference(zoo):
    """In bf16 on a CPU with the tile unit every linear runs on packed weights (with the residual
    add, and silu * up where the MLP is gated SiLU, inside the product): each architecture's
    prompt logprobs stay within bf16 rounding of transformers' float32 ones (MoE models: plus
    the error of transformers' own bf16 run, whose rounding flips near-tied expert choices)."""
    from sgl.kernels.cpu import tile_path
    from sgl.runtime.layers.linear import Linear
    from sgl.runtime.layers.moe import SparseMoE

    folder, ref = zoo
    ids = tokens(37, seed=1)
    with Engine(folder, dtype="bfloat16", max_total_tokens=1024) as engine:
        modules = list(engine._scheduler.runner.model.modules())
        linears = [m for m in modules if isinstance(m, Linear)]
        assert all(m.tiles is not None for m in linears) == tile_path()
        res = engine.generate(input_ids=ids, sampling_params={"max_new_tokens": 1}, return_logprob=True)
    ours = torch.tensor([r[0] for r in res["meta_info"]["input_token_logprobs"][1:]])
    error = (ours - ref.prompt_logprobs(ids)).abs()
    mean, top = 0.06, 0.4  # float32 vs bf16: ~0.02, 0.1
    if any(isinstance(m, SparseMoE) for m in modules):
        # bf16 rounding flips near-tied expert choices, which moves a logprob by up to ~1.5
        # in transformers' own bf16 run too: MoE models may add that run's error
        theirs = (Reference(folder, dtype=torch.bfloat16).prompt_logprobs(ids) - ref.prompt_logprobs(ids)).abs()
        mean, top = mean + float(theirs.mean()), top + float(theirs.max())
    assert error.mean() < mean and error.max() < top, (error.mean(), error.max(), mean, top)


def test_models_md_is_generated_from_the_registry():
    with open(os.path.join(ROOT, "docs", "models.md")) as f:
        assert f.read() == markdown_table(), "run `python -m sgl.runtime.models > docs/models.md`"


def test_every_media_model_lists_its_inputs():
    """A model that takes images, video or audio says so in docs/models.md's `inputs` column."""
    from sgl.runtime.models import REGISTRY, get_model_class
    from sgl.runtime.models.vision_language import VisionLanguageModel

    rows = {line.split("|")[1].strip(" `"): line.split("|")[4].strip() for line in markdown_table().splitlines()
            if line.startswith("| `")}
    for arch in REGISTRY:
        cls = get_model_class(arch)
        if issubclass(cls, VisionLanguageModel):
            media = rows[arch].split(", ")[1:]
            assert media and set(media) <= {"image", "video", "audio"}, (arch, rows[arch])
    assert rows["Qwen2VLForConditionalGeneration"] == "text, image, video"
    assert rows["Qwen2AudioForConditionalGeneration"] == "text, audio"
    assert rows["LlamaForCausalLM"] == "text"
