"""``GrammarCompiler``: spec -> shared ``CompiledGrammar``, cached, built off the caller's thread.

The scheduler calls ``compile_async`` when a constrained request arrives and keeps scheduling
other requests until the future is done (building an index walks the whole vocabulary once per
DFA state: ~1-10 ms per state on 49k tokens; then every state's mask row is packed, see
state_table.py).

The cache keeps at most ``cache_size`` grammars and, counting their mask tables (6 KB per state at
49k vocab, up to state_table.MAX_TABLE_BYTES each), at most ``cache_bytes``; the least recently
used go first (checked as each new grammar is added). Requests already holding an evicted
grammar keep it alive until they finish.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from .engine_grammar import EngineCompiled, EngineGrammar
from .grammar import CompiledGrammar, Grammar
from .json_schema import SchemaOptions
from .specs import ENGINE_KINDS, GrammarSpec, to_regex
from .vocabulary import TokenizerInfo


class GrammarCompiler:
    def __init__(self, tokenizer: Any, vocab_size: int | None = None, *,
                 eos_token_ids: set[int] | None = None, schema_options: SchemaOptions | None = None,
                 cache_size: int = 256, cache_bytes: int = 1 << 30, max_workers: int = 1) -> None:
        self.info = tokenizer if isinstance(tokenizer, TokenizerInfo) else TokenizerInfo.from_hf(
            tokenizer, vocab_size, eos_token_ids)
        self.schema_options = schema_options or SchemaOptions()
        self._vocabulary = self.info.outlines_vocabulary()
        self.info.prefix_index  # noqa: B018  NOTE: built now, not on the scheduler's first jump
        self._cache: OrderedDict[GrammarSpec, Future[CompiledGrammar]] = OrderedDict()
        self._cache_size, self._cache_bytes = cache_size, cache_bytes
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="grammar")

    def compile_async(self, kind: str, key: Any) -> Future[CompiledGrammar | EngineCompiled]:
        """Future of the compiled grammar; failures (ConstraintError) surface from ``result()``.

        ``kind``: "regex" (key: pattern), "json_schema" (key: str, dict or pydantic class),
        "ebnf" (GBNF or Lark text) or "structural_tag" (dict or JSON). Regexes and JSON schemas
        take our own DFA path; grammars and structural tags take llguidance (docs/grammars.md).
        """
        spec = _spec(kind, key)
        with self._lock:
            fut = self._cache.get(spec)
            if fut is not None:
                self._cache.move_to_end(spec)
                return fut
            fut = self._pool.submit(self._build, spec)
            self._cache[spec] = fut
            self._evict()
        fut.add_done_callback(lambda f: self._forget_failure(spec, f))
        return fut

    def _evict(self) -> None:
        """Drops least recently used entries over the count or byte budget (lock held)."""
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        sizes = [_table_bytes(f) for f in self._cache.values()]
        total = sum(sizes)
        for spec, size in zip(list(self._cache), sizes):
            if total <= self._cache_bytes or len(self._cache) == 1:
                break
            del self._cache[spec]
            total -= size

    def compile(self, kind: str, key: Any) -> CompiledGrammar | EngineCompiled:
        return self.compile_async(kind, key).result()

    def grammar(self, kind: str, key: Any) -> Grammar | EngineGrammar:
        """A fresh per-request matcher (blocks until compiled)."""
        return self.compile(kind, key).grammar()

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _build(self, spec: GrammarSpec) -> CompiledGrammar | EngineCompiled:
        if spec.kind in ENGINE_KINDS:
            return EngineCompiled(spec.kind, spec.key, self.info)
        compiled = CompiledGrammar(to_regex(spec, self.schema_options), self.info, self._vocabulary)
        compiled.precompute_forced_tokens()  # builds the char DFA too: the scheduler thread never waits on it
        return compiled

    def _forget_failure(self, spec: GrammarSpec, fut: Future[CompiledGrammar | EngineCompiled]) -> None:
        if fut.exception() is not None:  # NOTE: errors are not cached; a retry recompiles
            with self._lock:
                if self._cache.get(spec) is fut:
                    del self._cache[spec]


def _table_bytes(fut: Future[CompiledGrammar | EngineCompiled]) -> int:
    if not fut.done() or fut.cancelled() or fut.exception() is not None:
        return 0
    return fut.result().table.nbytes


def _spec(kind: str, key: Any) -> GrammarSpec:
    from .specs import grammar_spec

    if kind == "regex":
        spec = grammar_spec(regex=key)
    elif kind in ("json_schema", *ENGINE_KINDS):
        spec = grammar_spec(**{kind: key})
    else:
        raise ValueError(f"unknown grammar kind {kind!r}; use 'regex', 'json_schema', 'ebnf' or 'structural_tag'")
    assert spec is not None
    return spec
