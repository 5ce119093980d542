"""SGLang's scoring of a generation model (`/v1/score` with `label_token_ids`; decoder-only
rerankers such as Qwen3-Reranker answer "yes" / "no"): for each item, the probability of each
label token as the next token after query + item.

Each (item, label) is one request of the prompt followed by the label token, computing no new
token (max_new_tokens 0) and returning the label's input logprob; the prompt is cached once per
item by the radix tree, so the labels after the first cost one token each."""

from __future__ import annotations

import math
from typing import Any


class LabelScoringAPI:
    # the Engine's (engine.py)
    tokenizer: Any
    model_config: Any

    def generate(self, *args: Any, **kwargs: Any) -> Any: ...  # noqa: D102 (the Engine's)

    def score_labels(self, query: str, items: list[str], label_token_ids: list[int], apply_softmax: bool = False,
                     item_first: bool = False) -> list[dict]:
        """Per item (in order): {"scores": one probability per label token (softmax over the
        labels when apply_softmax, else each token's own probability), "prompt_tokens"}. The
        prompt is the text query + item (item + query with item_first), no separator."""
        if not isinstance(query, str):
            raise ValueError("`query` must be a string")
        if not isinstance(items, list) or not items or not all(isinstance(i, str) and i for i in items):
            raise ValueError("`items` must be a non-empty list of non-empty strings")
        vocab = self.model_config.vocab_size
        if not label_token_ids or not all(isinstance(t, int) and 0 <= t < vocab for t in label_token_ids):
            raise ValueError(f"`label_token_ids` must be a non-empty list of token ids in [0, {vocab})")
        prompts = [list(self.tokenizer(item + query if item_first else query + item)["input_ids"]) for item in items]
        inputs = [p + [t] for p in prompts for t in label_token_ids]
        results = self.generate(input_ids=inputs, sampling_params={"max_new_tokens": 0}, return_logprob=True,
                                logprob_start_len=min(len(p) for p in prompts) - 1)  # the first row is None
        out = []
        for i, p in enumerate(prompts):
            rows = results[i * len(label_token_ids):(i + 1) * len(label_token_ids)]
            logprobs = [r["meta_info"]["input_token_logprobs"][-1][0] for r in rows]
            if apply_softmax:
                top = max(logprobs)
                weights = [math.exp(lp - top) for lp in logprobs]
                scores = [w / sum(weights) for w in weights]
            else:
                scores = [math.exp(lp) for lp in logprobs]
            out.append({"scores": scores, "prompt_tokens": len(p) + len(label_token_ids)})
        return out
