"""The Engine's API for pooling models: encode (embeddings), classify (label scores), score
(rewards, one-label scores) and rerank (a query against documents).

Requests are batched continuously like generation; a bidirectional encoder computes each input
in one forward without the radix cache, a causal last-token model may reuse a cached prefix."""

from __future__ import annotations

import queue
from typing import TYPE_CHECKING, Any

import torch

from .multimodal.media import load_image
from .multimodal.processor import MediaProcessor, as_list, expand_prompts, load_hf_image_processor
from .pooling_inputs import PoolingInputs, Tokens

if TYPE_CHECKING:
    from .config import ModelConfig
    from .requests import RequestFactory
    from .scheduler.request import Req


class PoolingAPI:
    # the Engine's (engine.py)
    task: str
    tokenizer: Any
    model_config: ModelConfig
    context_length: int
    num_slots: int
    _requests: RequestFactory
    _pooling: PoolingInputs
    _scheduler: Any
    _media: MediaProcessor | None
    model_path: str
    config: Any  # EngineConfig

    def _check_alive(self) -> None: ...  # noqa: D102 (the Engine's)
    def _submit_all(self, reqs: list[Req]) -> list[queue.Queue]: ...  # type: ignore[empty-body]
    def _wait(self, channel: queue.Queue) -> dict: ...  # type: ignore[empty-body]

    def _pooling_inputs(self, model: Any) -> PoolingInputs:
        limit, reason = self.context_length, f"context length {self.context_length}"
        if self.num_slots < limit:
            limit, reason = self.num_slots, f"the KV cache holds {self.num_slots} tokens: raise max_total_tokens"
        seq = self.model_config.max_seq_length
        if seq is not None and seq < limit:
            limit, reason = seq, "sentence_bert_config.json max_seq_length"
        return PoolingInputs(self.tokenizer, self.model_config.vocab_size, limit, reason)

    @property
    def max_input_tokens(self) -> int:
        """The longest input a pooling request takes (longer ones: truncate=True or an error)."""
        return self._pooling.limit

    @property
    def embedding_dim(self) -> int:
        """The size of encode()'s vectors: the hidden size, or a projection's (CLIP)."""
        return int(getattr(self._scheduler.runner.model, "embedding_dim", self.model_config.hidden_size))

    @property
    def labels(self) -> tuple[str, ...]:
        """A classifier's labels in output order (id2label); () for other models."""
        return tuple(getattr(self._scheduler.runner.model, "labels", ()))

    # ---- the calls -----------------------------------------------------------------------
    def encode(self, prompt: str | list[str] | None = None, input_ids: list[int] | list[list[int]] | None = None,
               rid: str | list[str] | None = None, normalize: bool | None = None, dimensions: int | None = None,
               truncate: bool = False, image_data: Any = None, video_data: Any = None) -> dict | list[dict]:
        """{"embedding": [floats], "meta_info"} per input, a list for a list of inputs.
        normalize: L2-normalize (None: the model's rule); dimensions: keep the first this many
        entries (Matryoshka models only), normalized after; truncate: cut inputs past
        `max_input_tokens` instead of raising ValueError. On a classifier the embedding is its
        label scores.
        image_data / video_data: a vision-language embedder's media (GME-Qwen2-VL: Qwen2-VL with
        is_embedding=True), one item or a list per prompt, at the prompt's placeholders as in
        generate(); on CLIP, images without a prompt embed the images themselves."""
        self._check_pooling("encode()")
        if self.task == "classify" and (normalize is not None or dimensions is not None):
            raise ValueError("`normalize` and `dimensions` apply to embedding models; this model classifies")
        self._check_dimensions(dimensions)
        pooler = self._scheduler.runner.model.pooler
        norm = bool(pooler.normalize if normalize is None else normalize) and self.task == "embed"
        model = self._scheduler.runner.model
        if prompt is None and input_ids is None and image_data is not None and hasattr(model, "embed_images"):
            if video_data is not None:
                raise ValueError(f"video_data: {self.model_config.architecture} embeds images, not videos")
            results = [{"embedding": v, "meta_info": {"prompt_tokens": 0, "cached_tokens": 0, "finish_reason": None}}
                       for v in self._embed_images(model, as_list(image_data), norm)]
            return results if isinstance(image_data, list) else results[0]
        tokens, is_batch = self._pooling.from_call(prompt, input_ids, truncate)
        media = expand_prompts(self._media, self.model_config.architecture, [t.ids for t in tokens], is_batch,
                               image_data, video_data, self._pooling.expanded)
        if media:
            tokens = [Tokens(ids, t.types) for t, (ids, _) in zip(tokens, media)]
        results = self._run(tokens, rid, norm, dimensions, [mm for _, mm in media] if media else None)
        return results if is_batch else results[0]

    def classify(self, prompt: str | list[str] | None = None, input_ids: list[int] | list[list[int]] | None = None,
                 truncate: bool = False) -> dict | list[dict]:
        """Classification and reward models: {"label", "scores": one per label (softmax,
        sigmoid or raw by the model's rule), "meta_info"} per input."""
        self._check_classifier("classify()")
        tokens, is_batch = self._pooling.from_call(prompt, input_ids, truncate)
        out = [self._labelled(r) for r in self._run(tokens, None, False, None)]
        return out if is_batch else out[0]

    def score(self, prompt: str | list[str] | None = None, input_ids: list[int] | list[list[int]] | None = None,
              truncate: bool = False) -> float | list[float]:
        """Reward models and one-label classifiers: the score of each input."""
        results = self.score_results(prompt, input_ids, truncate)
        scores = [r["score"] for r in results] if isinstance(results, list) else results["score"]
        return scores

    def score_results(self, prompt: str | list[str] | None = None,
                      input_ids: list[int] | list[list[int]] | None = None,
                      truncate: bool = False) -> dict | list[dict]:
        """`score` with each input's meta_info (token counts): {"score", "meta_info"}."""
        self._check_single_score("score()")
        tokens, is_batch = self._pooling.from_call(prompt, input_ids, truncate)
        out = [{"score": self._first(r), "meta_info": r["meta_info"]} for r in self._run(tokens, None, False, None)]
        return out if is_batch else out[0]

    def rerank(self, query: str, documents: list[str], truncate: bool = False) -> list[float]:
        """Relevance of each document to `query`, in document order: a cross-encoder's score of
        each (query, document) pair, or for an embedding model the cosine of their vectors."""
        return [r["score"] for r in self.rerank_results(query, documents, truncate)]

    def rerank_results(self, query: str, documents: list[str], truncate: bool = False) -> list[dict]:
        """`rerank` with meta_info: {"score", "meta_info"} per document, in document order. For an
        embedding model the query is encoded once; its tokens count in the first document's
        meta_info["prompt_tokens"] (so the sum over documents is the request's usage)."""
        self._check_pooling("rerank()")
        if not isinstance(query, str):
            raise ValueError("`query` must be a string")
        if not isinstance(documents, list) or not documents or not all(isinstance(d, str) for d in documents):
            raise ValueError("`documents` must be a non-empty list of strings")
        if self.task == "embed":
            texts = [self._pooling.text(query, "query", truncate), *self._pooling.texts(documents, "documents", truncate)]
            results = self._run(texts, None, True, None)
            if any(r["embedding"] is None for r in results):
                return [{"score": None, "meta_info": r["meta_info"]} for r in results[1:]]
            vectors = torch.tensor([r["embedding"] for r in results])
            out = [{"score": float(s), "meta_info": dict(r["meta_info"])}
                   for s, r in zip((vectors[1:] @ vectors[0]).tolist(), results[1:])]
            out[0]["meta_info"]["prompt_tokens"] += results[0]["meta_info"]["prompt_tokens"]
            return out
        self._check_single_score("rerank()")
        pairs = [self._pooling.pair(query, d, f"documents.{i}", truncate) for i, d in enumerate(documents)]
        return [{"score": self._first(r), "meta_info": r["meta_info"]} for r in self._run(pairs, None, False, None)]

    # ---- helpers -------------------------------------------------------------------------
    def _embed_images(self, model: Any, images: list[Any], normalize: bool) -> list[list[float]]:
        """CLIP's image side: the folder's image processor (PIL), then the tower on this thread."""
        if not images:
            raise ValueError("image_data: give at least one image")
        if getattr(self, "_image_processor", None) is None:
            self._image_processor = load_hf_image_processor(self.model_path)
        field = "image_data"
        pils = [load_image(im, f"{field}[{i}]" if len(images) > 1 else field, self.config.allow_url_media)
                for i, im in enumerate(images)]
        pixels = self._image_processor(images=pils, return_tensors="pt")["pixel_values"]
        param = next(model.parameters())
        with torch.inference_mode():
            v = model.embed_images(pixels.to(param.device, param.dtype)).float()
        if normalize:
            v = torch.nn.functional.normalize(v, dim=-1)
        return v.cpu().tolist()

    def _run(self, tokens: list[Tokens], rid: str | list[str] | None, normalize: bool,
             dimensions: int | None, media: list | None = None) -> list[dict]:
        self._check_alive()
        rids = rid if isinstance(rid, list) else [rid] * len(tokens)
        if len(rids) != len(tokens):
            raise ValueError("`rid`: a list needs one id per input")
        reqs = [self._requests.make_pooling(t.ids, r, t.types, normalize, dimensions) for t, r in zip(tokens, rids)]
        for r, mm in zip(reqs, media or []):
            r.media = mm  # the expanded prompt's images and videos (MultimodalInputs)
        return [self._wait(c) for c in self._submit_all(reqs)]

    @staticmethod
    def _first(result: dict) -> float | None:
        """A one-label result's score; None when the request failed (its meta_info says why)."""
        return None if result["embedding"] is None else result["embedding"][0]

    def _labelled(self, result: dict) -> dict:
        scores = result["embedding"]
        if scores is None:  # the request failed: its meta_info says why
            return {"label": None, "scores": None, "meta_info": result["meta_info"]}
        best = max(range(len(scores)), key=scores.__getitem__)
        return {"label": self.labels[best], "scores": scores, "meta_info": result["meta_info"]}

    def _check_pooling(self, call: str) -> None:
        self._check_alive()
        if self.task == "generate":
            raise ValueError(f"{self.model_config.architecture} generates text: {call} needs an embedding, "
                             "classification or reward model (or is_embedding=True on a decoder); use generate()")

    def _check_classifier(self, call: str) -> None:
        self._check_pooling(call)
        if self.task != "classify":
            raise ValueError(f"{self.model_config.architecture} is an embedding model: {call} needs a "
                             "classification, reward or cross-encoder model; use encode()")

    def _check_single_score(self, call: str) -> None:
        self._check_classifier(call)
        if len(self.labels) != 1:
            raise ValueError(f"{call} needs a model with one score; this one has {len(self.labels)} labels "
                             f"({', '.join(self.labels)}): use classify()")

    def _check_dimensions(self, dimensions: int | None) -> None:
        if dimensions is None:
            return
        size = self.embedding_dim
        if not isinstance(dimensions, int) or isinstance(dimensions, bool) or dimensions < 1:
            raise ValueError(f"`dimensions` must be a positive integer, at most {size}")
        if dimensions > size:
            raise ValueError(f"`dimensions`={dimensions} is larger than this model's {size}-dimensional vectors")
        allowed = self.model_config.matryoshka_dims
        if dimensions == size or allowed == ():
            return
        if allowed is None:
            raise ValueError(f"`dimensions`={dimensions}: this model gives {size}-dimensional vectors and does not "
                             "allow truncation (config.json has no is_matryoshka / matryoshka_dimensions); "
                             "leave `dimensions` out")
        if dimensions not in allowed:
            raise ValueError(f"`dimensions`={dimensions}: this model allows {sorted(allowed)}")
