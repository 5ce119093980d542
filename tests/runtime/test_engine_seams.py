"""The engine's seams, each used by a model built in the test: a pooler head instead of logits,
input embeddings in place of token embeddings, and a KV pool of another implementation."""

from __future__ import annotations

import json
import os

import pytest
import torch
from llama_fixtures import save_tiny_checkpoint, tiny_llama_config
from sgl.runtime import Engine
from sgl.runtime.cache import KVPool
from sgl.runtime.config import EngineConfig
from sgl.runtime.layers.pooler import Pooler
from sgl.runtime.memory import choose_num_slots
from sgl.runtime.models import register_model
from sgl.runtime.models.llama import LlamaForCausalLM

PROMPTS = [[5, 17, 923, 4021, 77, 310, 12], [9, 8, 7, 6, 5, 4, 3, 2, 1000, 2000]]


@pytest.fixture(scope="module")
def folder(tmp_path_factory, default_tokenizer_folder):
    return save_tiny_checkpoint(tiny_llama_config("plain"), str(tmp_path_factory.mktemp("tiny")),
                                default_tokenizer_folder)


@pytest.fixture(scope="module")
def reference(folder):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()


def with_architecture(folder: str, tmp_path, architecture: str) -> str:
    """A copy of the checkpoint folder whose config names another architecture."""
    copy = tmp_path / architecture
    copy.mkdir()
    for name in os.listdir(folder):
        os.link(os.path.join(folder, name), copy / name)
    config = json.loads((copy / "config.json").read_text())
    config["architectures"] = [architecture]
    (copy / "config.json").unlink()
    (copy / "config.json").write_text(json.dumps(config))
    return str(copy)


class LastTokenEmbedder(LlamaForCausalLM):
    task = "embed"
    pooler = Pooler("last", normalize=True)


class MeanEmbedder(LlamaForCausalLM):
    task = "embed"
    pooler = Pooler("mean", normalize=False)


@pytest.mark.parametrize("cls", [LastTokenEmbedder, MeanEmbedder])
def test_a_pooler_head_runs_through_the_engine(folder, reference, tmp_path, cls):
    register_model(cls.__name__, cls)
    with Engine(with_architecture(folder, tmp_path, cls.__name__), dtype="float32") as engine:
        assert engine.task == "embed"
        with pytest.raises(ValueError, match="use encode"):
            engine.generate(input_ids=PROMPTS[0])
        out = engine.encode(input_ids=PROMPTS)
        again = engine.encode(input_ids=PROMPTS[0])  # a cached prefix (last token) or none (mean)
        engine.check_kv()
    for ids, result in zip(PROMPTS, out):
        with torch.inference_mode():
            hidden = reference.model(torch.tensor([ids])).last_hidden_state[0]  # after the final norm
        expected = hidden[-1] / hidden[-1].norm() if cls is LastTokenEmbedder else hidden.mean(0)
        assert torch.allclose(torch.tensor(result["embedding"]), expected, atol=1e-4), cls
        assert result["meta_info"]["finish_reason"]["type"] == "length"
    assert torch.allclose(torch.tensor(again["embedding"]), torch.tensor(out[0]["embedding"]), atol=1e-5)
    assert again["meta_info"]["cached_tokens"] == (len(PROMPTS[0]) - 1 if cls is LastTokenEmbedder else 0)


def test_input_embeddings_replace_token_embeddings(folder, reference):
    torch.manual_seed(0)
    rows = torch.randn(9, 64) * 0.5  # (tokens, hidden): no token has these embeddings
    with torch.inference_mode():
        embed = reference.get_input_embeddings()
        x, expected = rows[None], []
        for _ in range(6):  # transformers' greedy continuation from the embeddings
            nxt = int(reference(inputs_embeds=x).logits[0, -1].argmax())
            expected.append(nxt)
            x = torch.cat([x, embed(torch.tensor([[nxt]]))], dim=1)
    greedy = {"max_new_tokens": 6, "temperature": 0, "ignore_eos": True}
    with Engine(folder, dtype="float32", chunked_prefill_size=4) as engine:  # chunks embed their part only
        first = engine.generate(input_embeds=rows.tolist(), sampling_params=greedy)
        same = engine.generate(input_embeds=rows, sampling_params=greedy)
        other = engine.generate(input_embeds=rows.flip(0), sampling_params=greedy)
        with pytest.raises(ValueError, match="input_embeds must be"):
            engine.generate(input_embeds=torch.zeros(3, 7))
        engine.check_kv()
    assert first["output_ids"] == expected
    assert same["output_ids"] == expected and same["meta_info"]["cached_tokens"] == 8  # keyed by content
    assert other["meta_info"]["cached_tokens"] == 0


class SplitKVPool(KVPool):
    """A second pool implementation: one (slots + 1, 2, kv_heads, head_dim) buffer a layer, keys
    and values side by side, read through views."""

    def __init__(self, num_layers: int, kv_heads: int, head_dim: int, dtype: torch.dtype) -> None:
        self.shape, self.dtype, self.num_layers = (2, kv_heads, head_dim), dtype, num_layers
        self.buffers: list[torch.Tensor] = []
        self.stores = 0

    def bytes_per_token(self) -> int:
        return self.num_layers * 2 * self.shape[1] * self.shape[2] * torch.empty((), dtype=self.dtype).element_size()

    def allocate(self, num_slots: int) -> None:
        self.num_slots = num_slots
        self.buffers = [torch.zeros(num_slots + 1, *self.shape, dtype=self.dtype) for _ in range(self.num_layers)]

    def keys(self, layer: int) -> torch.Tensor:
        return self.buffers[layer][:, 0]

    def values(self, layer: int) -> torch.Tensor:
        return self.buffers[layer][:, 1]

    def store(self, layer: int, slots: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> None:
        self.stores += 1
        self.buffers[layer][slots] = torch.stack((k, v), dim=1)


class SplitPoolLlama(LlamaForCausalLM):
    def make_kv_pool(self, dtype, device):
        c = self.config
        return SplitKVPool(c.num_layers, c.num_kv_heads, c.head_dim, dtype)


def test_a_second_pool_implementation_runs_a_model(folder, tmp_path):
    register_model("SplitPoolLlama", SplitPoolLlama)
    greedy = {"max_new_tokens": 10, "temperature": 0, "ignore_eos": True}
    with Engine(folder, dtype="float32") as plain:
        expected = [o["output_ids"] for o in plain.generate(input_ids=PROMPTS, sampling_params=greedy)]
    with Engine(with_architecture(folder, tmp_path, "SplitPoolLlama"), dtype="float32") as engine:
        pool = engine._scheduler.runner.kv_pool
        got = [o["output_ids"] for o in engine.generate(input_ids=PROMPTS, sampling_params=greedy)]
        assert isinstance(pool, SplitKVPool) and pool.stores > 0
        engine.check_kv()
    assert got == expected


def test_memory_sizing_asks_the_pool():
    cfg = EngineConfig(mem_fraction_static=0.01)
    small, big = SplitKVPool(2, 1, 8, torch.float32), SplitKVPool(200, 8, 128, torch.float32)
    assert choose_num_slots(cfg, big, torch.device("cpu"), 64) < choose_num_slots(cfg, small, torch.device("cpu"), 64)
