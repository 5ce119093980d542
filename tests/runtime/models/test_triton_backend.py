"""The Triton attention backend end to end: the engine with attention_backend="triton" against
transformers, on tiny checkpoints whose attention has each flag the kernels take (GQA, sliding
window, soft-capping, ALiBi, sinks, MLA). Without CUDA the kernels run under Triton's interpreter on CPU
tensors (set before sgl.kernels.triton is imported; tests/kernels/conftest.py does the same)."""

from __future__ import annotations

import os

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

from llama_fixtures import Reference, save_tiny_checkpoint  # noqa: E402
from sgl.kernels.triton import TRITON_AVAILABLE, interpreting  # noqa: E402
from sgl.runtime import Engine  # noqa: E402
from test_model_zoo import GREEDY, assert_logprobs, tokens  # noqa: E402
from zoo_configs import tiny_config  # noqa: E402

pytestmark = pytest.mark.skipif(not TRITON_AVAILABLE or not (torch.cuda.is_available() or interpreting()),
                                reason="triton needs CUDA, or TRITON_INTERPRET=1 set before it was imported")

# GQA with soft-capping and sliding windows (Gemma 2), ALiBi (Bloom), sinks (GPT-OSS), MLA's
# one 576-wide latent whose first 512 columns are the value (DeepSeek V3)
ARCHS = ["Gemma2ForCausalLM", "BloomForCausalLM", "GptOssForCausalLM", "DeepseekV3ForCausalLM"]


@pytest.fixture(scope="module", params=ARCHS)
def zoo(request, tmp_path_factory, default_tokenizer_folder):
    folder = str(tmp_path_factory.mktemp(request.param))
    save_tiny_checkpoint(tiny_config(request.param), folder, default_tokenizer_folder)
    return folder, Reference(folder)


def test_triton_backend_matches_transformers(zoo):
    """A prompt prefilled in chunks (extends after a prefix, past the windows), then two requests
    behind it as one batched extend and decoded together: logprobs within 1e-4 of transformers'
    in float32 and the same greedy tokens. (Short: the interpreter runs each program in Python.)"""
    from sgl.runtime.layers.triton_attention import TritonBackend

    folder, ref = zoo
    greedy = dict(GREEDY, max_new_tokens=8)
    with Engine(folder, dtype="float32", max_total_tokens=1024, chunked_prefill_size=8,
                attention_backend="triton") as engine:
        assert isinstance(engine._scheduler.runner.attn_backend, TritonBackend)
        prefix = tokens(20, seed=2)
        res = engine.generate(input_ids=prefix, sampling_params={"max_new_tokens": 0}, return_logprob=True)
        assert_logprobs(res, prefix, 0, ref)
        batch = [prefix + tokens(n, seed=3 + n) for n in (3, 9)]
        results = engine.generate(input_ids=batch, sampling_params=greedy, return_logprob=True,
                                  logprob_start_len=len(prefix))
        for ids, res in zip(batch, results):
            assert res["meta_info"]["cached_tokens"] > 0
            assert_logprobs(res, ids, len(prefix), ref)
            assert res["output_ids"] == ref.greedy(ids, 8)
        engine.check_kv()


def test_a_bidirectional_encoder_falls_back_to_the_torch_backend(tmp_path, default_tokenizer_folder):
    """BERT's layers attend both ways, which the kernels do not: those layers take SDPA, and the
    embeddings equal the torch backend's."""
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    config = BertConfig(vocab_size=49152, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=96, max_position_embeddings=128)
    BertModel(config).save_pretrained(tmp_path)
    for name in os.listdir(default_tokenizer_folder):
        if name.startswith(("tokenizer", "special_tokens")):
            os.symlink(os.path.join(default_tokenizer_folder, name), tmp_path / name)
    ids = [tokens(11, seed=5), tokens(6, seed=6)]
    out = {}
    for backend in ("triton", "torch_native"):
        with Engine(str(tmp_path), dtype="float32", attention_backend=backend) as engine:
            out[backend] = torch.tensor([r["embedding"] for r in engine.encode(input_ids=ids)])
    torch.testing.assert_close(out["triton"], out["torch_native"], atol=1e-5, rtol=0)


def test_an_unknown_backend_is_a_clear_error():
    from sgl.runtime.config import EngineConfig

    with pytest.raises(ValueError, match="attention_backend='flash': use one of auto, torch_native, triton"):
        EngineConfig(attention_backend="flash")
