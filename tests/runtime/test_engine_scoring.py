"""Engine.score_labels (SGLang's /v1/score with label_token_ids) on a tiny random Llama against
transformers: each label token's next-token probability after query + item (or item + query),
and the softmax over the labels."""

from __future__ import annotations

import pytest
import torch
from llama_fixtures import save_tiny_checkpoint, tiny_llama_config
from sgl.runtime import Engine

QUERY = "Is this about bread? "
ITEMS = ["a recipe for sourdough", "the football final", "x"]
LABELS = [100, 2000, 37]


def test_label_scores_match_transformers(tmp_path, default_tokenizer_folder):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = save_tiny_checkpoint(tiny_llama_config("plain"), str(tmp_path), default_tokenizer_folder)
    with Engine(folder, dtype="float32") as engine:
        plain = engine.score_labels(QUERY, ITEMS, LABELS)
        soft = engine.score_labels(QUERY, ITEMS, LABELS, apply_softmax=True, item_first=True)
        with pytest.raises(ValueError, match="label_token_ids"):
            engine.score_labels(QUERY, ITEMS, [10**7])
        with pytest.raises(ValueError, match="items"):
            engine.score_labels(QUERY, [], LABELS)
        engine.check_kv()
    ref = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    tok = AutoTokenizer.from_pretrained(folder)

    def next_logprobs(text: str) -> torch.Tensor:
        with torch.inference_mode():
            return torch.log_softmax(ref(**tok(text, return_tensors="pt")).logits[0, -1].float(), -1)[LABELS]

    for item, p, s in zip(ITEMS, plain, soft):
        torch.testing.assert_close(torch.tensor(p["scores"]), next_logprobs(QUERY + item).exp(), atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(torch.tensor(s["scores"]), torch.softmax(next_logprobs(item + QUERY), -1),
                                   atol=1e-5, rtol=1e-4)
        assert abs(sum(s["scores"]) - 1) < 1e-6
