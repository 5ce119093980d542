"""A tensor-parallel rank reads only its shards at load (in-process: apply_tp for rank 1 of 2,
no collectives): each expert's gate/up/down tensor is read as half of it, the whole checkpoint
as about half, and what it holds is the matching part of the tp=1 model's weights (Qwen2-MoE's
experts, shared expert, heads and vocab rows). A split that does not divide names tp_size."""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from llama_fixtures import save_tiny_checkpoint
from sgl.runtime import loader
from sgl.runtime.config import EngineConfig
from sgl.runtime.loader.safetensors_folder import iterate_weights

sys.path.insert(0, str(Path(__file__).parent / "models"))
from zoo_configs import tiny_config  # noqa: E402


class _Recorded:
    """A lazy safetensors slice that logs (name, full numel, numel read) for every read."""

    def __init__(self, name: str, part, log: list) -> None:
        self.name, self.part, self.log = name, part, log

    def __getitem__(self, key):
        t = self.part[key]
        self.log.append((self.name, int(torch.Size(self.part.get_shape()).numel()), t.numel()))
        return t


def _load(folder: str, monkeypatch, group=None):
    log: list = []

    def recorded(path, progress=False, lazy=False):
        for name, part in iterate_weights(path, progress=progress, lazy=lazy):
            yield name, (_Recorded(name, part, log) if lazy else part)

    monkeypatch.setattr(loader, "iterate_weights", recorded)
    cfg = EngineConfig(model_path=folder, dtype="float32", context_length=64)
    model = loader.load_model(cfg, torch.device("cpu"), tp_group=group).model
    return dict(model.named_parameters()), log


@pytest.fixture(scope="module")
def folder(tmp_path_factory, default_tokenizer_folder):
    """Qwen2-MoE: routed experts and a shared one (DeepSeek's heads: test_tensor_parallel_moe.py)."""
    return save_tiny_checkpoint(tiny_config("Qwen2MoeForCausalLM"), str(tmp_path_factory.mktemp("qwen2_moe")),
                                default_tokenizer_folder)


def test_rank_reads_and_holds_its_shards(folder, monkeypatch):
    whole, _ = _load(folder, monkeypatch)
    part, log = _load(folder, monkeypatch, SimpleNamespace(rank=1, size=2))
    experts = [(full, got) for name, full, got in log if ".experts." in name]
    assert experts and all(got * 2 == full for full, got in experts)  # half of each expert, from disk
    assert sum(got for _, _, got in log) < 0.6 * sum(full for _, full, _ in log)
    checked = []
    for name, p in part.items():
        w = whole[name]
        if name.endswith("experts.w13_weight"):  # (E, 2I, H): rank 1's gate rows, then its up rows
            i = w.shape[1] // 2
            expected = torch.cat([w[:, i // 2 : i], w[:, i + i // 2 :]], 1)
        elif name.endswith(("experts.w2_weight", "down_proj.weight", "o_proj.weight")):  # rows of the product
            expected = w[..., w.shape[-1] // 2 :]
        elif name.endswith(("embed_tokens.weight", "lm_head.weight")):  # vocab rows
            expected = w[w.shape[0] // 2 :]
        elif p.shape == w.shape:  # replicated: norms, routers, the latent path
            expected = w
        else:
            continue  # packed column shards (q/k/v, gate/up): the parity tests check them
        torch.testing.assert_close(p, expected, rtol=0, atol=0, msg=name)
        checked.append(name)
    assert any(n.endswith("experts.w13_weight") for n in checked) and any("shared_expert.down" in n for n in checked)


def test_split_that_does_not_divide_names_tp_size(folder, monkeypatch):
    with pytest.raises(ValueError, match="tp_size=3"):
        _load(folder, monkeypatch, SimpleNamespace(rank=0, size=3))
