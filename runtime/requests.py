"""RequestFactory: validates and tokenizes caller input into scheduler requests."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

import torch

from .config import ModelConfig
from .forward_batch import InputEmbeds
from .sampling.detokenizer import IncrementalDetokenizer
from .sampling.healing import heal
from .sampling.params import SamplingParams
from .sampling.stop import StopChecker
from .scheduler.request import LogprobRequest, Req


@dataclass
class RequestGroup:
    copies: list[Req]  # n requests for one prompt
    warmup: Req | None  # with n > 1: a prefill-only request that caches the prompt first
    grammar: Future | None = None  # the compiled grammar, being built off the scheduler thread

    def attach_grammars(self) -> None:
        """Blocks the caller (not the scheduler) until the grammar is compiled; gives each copy
        its own matcher. Compile errors raise ValueError naming the field."""
        if self.grammar is None:
            return
        compiled = self.grammar.result()
        for r in self.copies:
            r.grammar = compiled.grammar()


class RequestFactory:
    def __init__(self, tokenizer: Any, model_config: ModelConfig, context_length: int, num_slots: int,
                 grammar_compiler: Callable[[], Any]) -> None:
        self.tokenizer, self.context_length, self.num_slots = tokenizer, context_length, num_slots
        self.grammar_compiler = grammar_compiler  # made on first use: building the vocabulary index takes time
        self.vocab_size = model_config.vocab_size
        eos = set(model_config.eos_token_ids)
        if getattr(tokenizer, "eos_token_id", None) is not None:
            eos.add(tokenizer.eos_token_id)
        self.eos_ids = frozenset(eos)

    def normalize_inputs(self, prompt: Any, input_ids: Any) -> tuple[list[list[int]], bool]:
        """-> (token ids per prompt, whether the caller passed a list)."""
        if (prompt is None) == (input_ids is None):
            raise ValueError("give exactly one of `prompt` (text), `input_ids` (token ids) or `input_embeds`")
        if prompt is not None:
            if isinstance(prompt, str):
                return [self._encode(prompt)], False
            if isinstance(prompt, list) and prompt and all(isinstance(p, str) for p in prompt):
                return [self._encode(p) for p in prompt], True
            raise ValueError("prompt must be a string or a non-empty list of strings")
        if isinstance(input_ids, list) and input_ids and all(isinstance(x, list) for x in input_ids):
            return [self._check_ids(x) for x in input_ids], True
        if isinstance(input_ids, list):
            return [self._check_ids(input_ids)], False
        raise ValueError("input_ids must be a list of token ids or a list of such lists")

    def _encode(self, text: str) -> list[int]:
        return self._check_ids(self.tokenizer(text)["input_ids"])

    def _check_ids(self, ids: list[Any]) -> list[int]:
        if not ids:
            raise ValueError("the prompt is empty: give at least one token")
        if not all(isinstance(t, int) and not isinstance(t, bool) and 0 <= t < self.vocab_size for t in ids):
            raise ValueError(f"input_ids must be integers in [0, {self.vocab_size})")
        return self.check_length(ids)

    def check_length(self, ids: list[int]) -> list[int]:
        """ids, if the prompt fits the context and the KV cache (media expanded included)."""
        if len(ids) >= self.context_length:
            raise ValueError(f"the prompt has {len(ids)} tokens but the context length is {self.context_length}: "
                             "shorten the prompt")
        if len(ids) >= self.num_slots:
            raise ValueError(f"the prompt has {len(ids)} tokens but the KV cache holds {self.num_slots}: "
                             "shorten the prompt or raise max_total_tokens")
        return list(ids)

    def embeds_prompt(self, input_embeds: Any, hidden_size: int) -> tuple[list[int], InputEmbeds]:
        """A prompt given as embeddings (len, hidden) -> placeholder ids and the embeddings.

        NOTE: placeholder i is a hash of rows 0..i (as SGLang pads image tokens with a hash of
        the pixels), so the radix cache reuses KV only for the same embeddings in the same order."""
        try:
            rows = torch.as_tensor(input_embeds, dtype=torch.float32)
        except (TypeError, ValueError, RuntimeError) as e:
            raise ValueError(f"input_embeds must be a list of rows of {hidden_size} floats: {e}") from None
        if rows.dim() != 2 or rows.shape[0] == 0 or rows.shape[1] != hidden_size:
            raise ValueError(f"input_embeds must be (tokens, {hidden_size}): got shape {tuple(rows.shape)}")
        if not bool(torch.isfinite(rows).all()):
            raise ValueError("input_embeds holds NaN or infinite values")
        digest, ids = hashlib.sha256(), []
        for row in rows:
            digest.update(row.numpy().tobytes())
            ids.append(int.from_bytes(digest.digest()[:8], "little") % self.vocab_size)
        self._check_ids(ids)
        return ids, InputEmbeds(torch.arange(len(ids)), rows)

    def make_pooling(self, ids: list[int], rid: str | None, token_types: list[int] | None = None,
                     normalize: bool = False, dimensions: int | None = None) -> Req:
        """A pooling request: the prompt is computed, its pooled vector is the result
        (checked by pooling_inputs.py, not here: a pooled input may fill the whole context)."""
        sp = SamplingParams(max_new_tokens=0)
        return Req(rid=rid or uuid.uuid4().hex, input_ids=ids, sampling=sp,
                   detokenizer=IncrementalDetokenizer(self.tokenizer, ids, True, True),
                   stop_checker=StopChecker([], []), eos_ids=self.eos_ids, pool=True,
                   token_type_ids=token_types, normalize=normalize, dimensions=dimensions)

    def make(self, ids: list[int], params: dict | None, rid: str | None, return_logprob: bool,
             logprob_start_len: int | None, top_logprobs_num: int, with_text: bool, stream: bool) -> RequestGroup:
        sp = params if isinstance(params, SamplingParams) else SamplingParams.from_dict(params)
        if not isinstance(top_logprobs_num, int) or not 0 <= top_logprobs_num <= self.vocab_size:
            raise ValueError(f"top_logprobs_num must be an integer in [0, {self.vocab_size}]")
        if logprob_start_len is not None and not isinstance(logprob_start_len, int):
            raise ValueError("logprob_start_len must be an integer")
        grammar = self._compile(sp)
        healing = heal(ids, self.grammar_compiler().info) if sp.token_healing else None
        if healing is not None:
            ids = healing.input_ids
        rid = rid or uuid.uuid4().hex
        start = 0 if logprob_start_len is None else logprob_start_len
        if start < 0:
            start = len(ids) - 1  # -1: no prompt logprobs beyond the (null) last row
        start = min(start, len(ids) - 1)

        def one(seed: int | None, n_params: SamplingParams) -> Req:
            gen = torch.Generator().manual_seed(seed % 2**64) if seed is not None else None
            return Req(
                rid=rid, input_ids=ids, sampling=n_params,
                detokenizer=IncrementalDetokenizer(self.tokenizer, ids, n_params.skip_special_tokens,
                                                   n_params.spaces_between_special_tokens,
                                                   healing.drop if healing else ""),
                stop_checker=StopChecker(n_params.stop, n_params.stop_regex), eos_ids=self.eos_ids,
                logprob=LogprobRequest(start, top_logprobs_num, with_text) if return_logprob else None,
                stream=stream, generator=gen, first_ids=healing.first_ids if healing else None)

        if sp.n == 1:
            return RequestGroup([one(sp.seed, sp)], None, grammar)
        copies = [one(None if sp.seed is None else sp.seed + i, sp) for i in range(sp.n)]
        warmup = one(None, SamplingParams(max_new_tokens=0))
        return RequestGroup(copies, warmup, grammar)

    def _compile(self, sp: SamplingParams) -> Future | None:
        if sp.constraint is None:
            return None
        from .constrained import grammar_spec

        kind, value = sp.constraint
        try:
            spec = grammar_spec(**{kind: value})
        except ValueError as e:
            raise ValueError(f"sampling_params.{kind}: {e}") from None
        return self.grammar_compiler().compile_async(spec.kind, spec.key)
