"""Per-request options of Engine.encode on a tiny random BERT against transformers: Matryoshka
`dimensions` (the first entries, then normalized; only sizes the config allows), `normalize`,
and `truncate` (an input past the limit is an error naming it unless asked)."""

from __future__ import annotations

import pytest
import torch
from pooling_fixtures import encoder_config, encoder_prompts, minilm_folder, save_model
from sgl.runtime import Engine


@pytest.fixture(scope="module")
def matryoshka_bert(tmp_path_factory):
    from transformers import BertConfig, BertModel

    folder = str(tmp_path_factory.mktemp("mrl"))
    config = encoder_config(BertConfig, max_position_embeddings=64, matryoshka_dimensions=[16, 32],
                            architectures=["BertModel"])
    return folder, save_model(BertModel, config, folder, minilm_folder())


def cls(ref, ids: list[int]) -> torch.Tensor:
    with torch.inference_mode():
        return ref(torch.tensor([ids])).last_hidden_state[0, 0]


def test_dimensions_normalize_truncate(matryoshka_bert):
    folder, ref = matryoshka_bert
    ids = encoder_prompts()[:2]
    too_long = [101] + [3000 + i for i in range(70)] + [102]
    with Engine(folder, dtype="float32") as engine:
        assert engine.max_input_tokens == 64
        short = engine.encode(input_ids=ids, dimensions=16)
        raw = engine.encode(input_ids=ids[0], dimensions=32, normalize=False)
        with pytest.raises(ValueError, match=r"allows \[16, 32\]"):
            engine.encode(input_ids=ids[0], dimensions=20)
        with pytest.raises(ValueError, match="larger than"):
            engine.encode(input_ids=ids[0], dimensions=65)
        with pytest.raises(ValueError, match=r"`input_ids` has 72 tokens, past this model's limit of 64"):
            engine.encode(input_ids=too_long)
        cut = engine.encode(input_ids=too_long, truncate=True)
        text = engine.encode("word " * 100, truncate=True)
    for p, r in zip(ids, short):
        v = cls(ref, p)[:16]
        torch.testing.assert_close(torch.tensor(r["embedding"]), v / v.norm(), atol=1e-4, rtol=0)
    torch.testing.assert_close(torch.tensor(raw["embedding"]), cls(ref, ids[0])[:32], atol=1e-4, rtol=0)
    v = cls(ref, too_long[:64])
    torch.testing.assert_close(torch.tensor(cut["embedding"]), v / v.norm(), atol=1e-4, rtol=0)
    assert cut["meta_info"]["prompt_tokens"] == 64 and text["meta_info"]["prompt_tokens"] == 64
