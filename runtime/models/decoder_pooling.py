"""Decoders as embedding, classification and reward models: the CausalLM of their family
(llama.py, gemma.py) with the LM head replaced by a pooler (the last token: causal attention
means only it has seen the whole input) and, for classifiers, a score head.

- embedders: Qwen2Model / Qwen3Model (gte-Qwen2, Qwen3-Embedding), LlamaModel / MistralModel
  (E5-Mistral), and any CausalLM served with `is_embedding=True` (`as_embedding`): last token,
  L2-normalized, unless the folder's modules.json says otherwise. Instruction prefixes are the
  caller's to add.
- classifiers: *ForSequenceClassification, `score` = Linear(hidden, num_labels, no bias); one
  label is a reward (no activation), several a softmax.
- Qwen2ForRewardModel (Qwen2.5-Math-RM, remote code upstream): Qwen2 with a two-layer value head.

NOTE: the last token's hidden state depends only on the tokens before it, so these models may
reuse a cached prefix (the scheduler computes at least the last token)."""

from __future__ import annotations

from typing import Any

from torch import nn

from ..config import ModelConfig
from ..layers.classifier import ValueHead, score_activation
from ..layers.linear import Linear
from ..layers.pooler import Pooler
from .gemma import Gemma2ForCausalLM
from .llama import LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM
from .vision_language import VisionLanguageModel

# checkpoints saved from the bare XModel (an embedder's usual layout) lack CausalLM's `model.`
MODEL_PREFIX = (r"^(?=(embed_tokens|layers|norm)\.)", "model.")


class _DecoderEmbedder:
    """Mixed in before a CausalLM: the pooler instead of the LM head."""

    task = "embed"

    def __init__(self, config: ModelConfig, max_length: int) -> None:
        super().__init__(config, max_length)  # type: ignore[call-arg]
        del self.lm_head, self.logits_processor  # type: ignore[attr-defined]
        self.pooler = config.pooling or Pooler("last", normalize=True)


class _DecoderClassifier:
    """Mixed in before a CausalLM: the last token through a score head."""

    task = "classify"
    head: type[nn.Module] = Linear  # score: Linear(hidden, num_labels)

    def __init__(self, config: ModelConfig, max_length: int) -> None:
        super().__init__(config, max_length)  # type: ignore[call-arg]
        del self.lm_head, self.logits_processor  # type: ignore[attr-defined]
        self.pooler = Pooler("last", normalize=False)
        # NOTE: the value head has one output whatever num_labels says (transformers' default is 2)
        self.labels = ("reward",) if self.head is ValueHead else config.labels
        n = len(self.labels)
        self.classifier = ValueHead(config.hidden_size, n) if self.head is ValueHead else \
            Linear(config.hidden_size, n, bias=False)
        self.activation = score_activation(config.score_activation, n, "none")


def _pooling_class(name: str, base: type[LlamaForCausalLM], mixin: type, **attrs: Any) -> type:
    """`mixin` over `base`, with the weight names of both: an embedder or classifier checkpoint
    has no lm_head, maybe no `model.` prefix, and a `score` head where the classifier is."""
    score = [(r"^score\.", "classifier.layers." if attrs.get("head") is ValueHead else "classifier.")]
    renamed = [MODEL_PREFIX, *score, *getattr(base, "renamed_weights", [])]
    ignored = (*base.ignored_weights, r"^lm_head\.")
    return type(name, (mixin, base), {"renamed_weights": renamed, "ignored_weights": ignored,
                                       "__module__": __name__, "__doc__": f"{base.__name__} as a {mixin.task} model",
                                       **attrs})


class _VisionLanguageEmbedder:
    """Mixed in before a vision-language model (GME-Qwen2-VL: Qwen2VLForConditionalGeneration
    served with is_embedding=True, as SGLang and vLLM serve it): its decoder's last hidden
    state, L2-normalized; the LM head is dropped."""

    task = "embed"

    def __init__(self, config: ModelConfig, max_length: int) -> None:
        super().__init__(config, max_length)  # type: ignore[call-arg]
        lm = self.language_model  # type: ignore[attr-defined]
        del lm.lm_head, lm.logits_processor
        self.pooler = config.pooling or Pooler("last", normalize=True)


def as_embedding(cls: type) -> type:
    """`is_embedding=True` on a CausalLM of the Llama family or a vision-language model: the
    same model, pooled."""
    if isinstance(cls, type) and issubclass(cls, VisionLanguageModel):
        ignored = (*cls.ignored_weights, r"(^|\.)lm_head\.")
        return type(cls.__name__ + "Embedding", (_VisionLanguageEmbedder, cls),
                    {"ignored_weights": ignored, "__module__": __name__, "__doc__": f"{cls.__name__} as an embed model"})
    if not isinstance(cls, type) or not issubclass(cls, LlamaForCausalLM):
        raise ValueError(f"is_embedding=True: {getattr(cls, '__name__', cls)} cannot be served as an embedder; "
                         "it takes a decoder of the Llama family (Llama, Mistral, Qwen2/3, Gemma, ...)")
    return _pooling_class(cls.__name__ + "Embedding", cls, _DecoderEmbedder)


LlamaModel = _pooling_class("LlamaModel", LlamaForCausalLM, _DecoderEmbedder)
MistralModel = _pooling_class("MistralModel", MistralForCausalLM, _DecoderEmbedder)
Qwen2Model = _pooling_class("Qwen2Model", Qwen2ForCausalLM, _DecoderEmbedder)
Qwen3Model = _pooling_class("Qwen3Model", Qwen3ForCausalLM, _DecoderEmbedder)
LlamaForSequenceClassification = _pooling_class("LlamaForSequenceClassification", LlamaForCausalLM,
                                                _DecoderClassifier)
Qwen2ForSequenceClassification = _pooling_class("Qwen2ForSequenceClassification", Qwen2ForCausalLM,
                                                _DecoderClassifier)
Qwen3ForSequenceClassification = _pooling_class("Qwen3ForSequenceClassification", Qwen3ForCausalLM,
                                                _DecoderClassifier)
Gemma2ForSequenceClassification = _pooling_class("Gemma2ForSequenceClassification", Gemma2ForCausalLM,
                                                 _DecoderClassifier)
Qwen2ForRewardModel = _pooling_class("Qwen2ForRewardModel", Qwen2ForCausalLM, _DecoderClassifier, head=ValueHead)
