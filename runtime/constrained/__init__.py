"""Constrained decoding: regex / JSON schema / dtype / choices grammars over outlines-core.

Engine surface::

    compiler = GrammarCompiler(tokenizer, vocab_size)          # once per engine
    spec = grammar_spec(regex=..., json_schema=..., dtype=..., choices=...)  # validate input
    fut = compiler.compile_async(spec.kind, spec.key)          # off-thread, cached
    g = Grammar(fut.result())                                   # per request
    apply_grammar_masks([g or None, ...], logits)              # per step, before sampling
    g.advance(token_id); g.is_finished(); g.forced_tokens()    # after sampling; jump-forward
"""

from __future__ import annotations

from .compiler import GrammarCompiler
from .errors import (
    ConflictingConstraintsError,
    ConstraintError,
    GrammarStateError,
    InvalidRegexError,
    InvalidSchemaError,
    UnsupportedSchemaError,
)
from .grammar import CompiledGrammar, Grammar
from .json_schema import SchemaOptions, schema_to_regex
from .jump_forward import forced_tokens
from .mask import apply_grammar_masks
from .specs import DTYPE_REGEX, GrammarSpec, check_regex, choices_regex, dtype_regex, grammar_spec
from .vocabulary import TokenizerInfo

__all__ = [
    "DTYPE_REGEX", "CompiledGrammar", "ConflictingConstraintsError", "ConstraintError", "Grammar",
    "GrammarCompiler", "GrammarSpec", "GrammarStateError", "InvalidRegexError", "InvalidSchemaError",
    "SchemaOptions", "TokenizerInfo", "UnsupportedSchemaError", "apply_grammar_masks", "check_regex",
    "choices_regex", "dtype_regex", "forced_tokens", "grammar_spec", "schema_to_regex",
]
