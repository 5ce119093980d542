"""Extends on the CPU kernel backend (runtime/layers/attention_backend.py): short query rows attend
one at a time in C (decode's kernel, through the slot table), long ones by SDPA; either way the
prompt logprobs are the torch backend's, windows and cached prefixes included."""

from __future__ import annotations

import pytest
import torch
from llama_fixtures import save_tiny_checkpoint, tiny_llama_config
from sgl.kernels.cpu import dispatch
from sgl.runtime import Engine
from sgl.runtime.layers.attention_backend import rows_max_mean_keys


def tiny_gemma3_config():
    """Two layers: one in an 8-token sliding window, one global; heads of 32."""
    from transformers import Gemma3TextConfig

    return Gemma3TextConfig(
        vocab_size=49152, hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, head_dim=32, max_position_embeddings=1024, sliding_window=8, query_pre_attn_scalar=24,
        layer_types=["sliding_attention", "full_attention"], final_logit_softcapping=None, initializer_range=0.2,
        bos_token_id=1, eos_token_id=2, pad_token_id=0, architectures=["Gemma3ForCausalLM"])


@pytest.fixture(scope="module", params=["llama", "gemma3"])
def engines(request, tmp_path_factory, default_tokenizer_folder, vector_kernels):
    """(ours, reference): the same bf16 checkpoint on the auto (CPU kernel) backend, its fused
    decoder stack off so every extend reaches the backend, and on the torch backend."""
    config = tiny_llama_config("gqa_llama3_tied_bias") if request.param == "llama" else tiny_gemma3_config()
    folder = save_tiny_checkpoint(config, str(tmp_path_factory.mktemp(request.param)), default_tokenizer_folder)
    with Engine(folder, dtype="bfloat16", max_total_tokens=4096) as ours, \
            Engine(folder, dtype="bfloat16", max_total_tokens=4096, attention_backend="torch_native") as reference:
        ours._scheduler.runner.fused = None
        yield ours, reference, config


def prompt_logprobs(engine: Engine, prompts: list[list[int]], start: int) -> list[torch.Tensor]:
    out = engine.generate(input_ids=prompts, sampling_params={"max_new_tokens": 1, "temperature": 0},
                          return_logprob=True, logprob_start_len=start)
    return [torch.tensor([row[0] for row in o["meta_info"]["input_token_logprobs"] if row[0] is not None])
            for o in out]


def test_extends_after_a_shared_prefix_attend_row_by_row_as_the_torch_backend_does(engines) -> None:
    ours, reference, config = engines
    torch.manual_seed(0)
    prefix = torch.randint(3, 40000, (24,)).tolist()
    new = (40, 33, 47)  # past the fused stack's 32 rows (were it on)
    prompts = [prefix + torch.randint(3, 40000, (n,)).tolist() for n in new]
    mean_keys = 24 + sum(n * (n + 1) / 2 for n in new) / sum(new)
    assert mean_keys <= rows_max_mean_keys(config.head_dim)  # short enough for the row kernel
    expected = [prompt_logprobs(reference, [prefix], 1)[0]] + prompt_logprobs(reference, prompts, 1)
    ours.flush_cache()
    got = prompt_logprobs(ours, [prefix], 1)  # cached: the next three extend after it
    before = dispatch["attention_rows"]
    got += prompt_logprobs(ours, prompts, 1)
    assert dispatch["attention_rows"] - before == 2  # one call a layer for the three requests' 120 rows
    for g, e in zip(got, expected):
        assert g.shape == e.shape
        assert (g - e).abs().max() < 0.15  # bf16: the kernels round differently


def test_rows_that_see_many_keys_take_sdpa(engines) -> None:
    ours, reference, config = engines
    torch.manual_seed(1)
    n = 2 * rows_max_mean_keys(config.head_dim) + 16  # a prompt whose rows see more than the limit on average
    prompt = torch.randint(3, 40000, (n,)).tolist()
    ours.flush_cache()
    before = dispatch["attention_rows"]
    got = prompt_logprobs(ours, [prompt], 1)[0]
    # Gemma 3's window of 8 keys keeps its sliding layer's rows short: that layer still takes rows
    windowed = getattr(config, "layer_types", []).count("sliding_attention")
    assert dispatch["attention_rows"] - before == windowed
    expected = prompt_logprobs(reference, [prompt], 1)[0]
    assert (got - expected).abs().max() < 0.15
