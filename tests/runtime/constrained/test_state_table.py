"""Precomputed per-state masks: the breadth-first walk finds every state outlines-core has,
each row is the index's allowed set, and states past the byte cap fall back to lazy rows."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sgl.runtime.constrained import (
    CompiledGrammar,
    Grammar,
    GrammarCompiler,
    apply_grammar_masks,
    schema_to_regex,
)
from sgl.runtime.constrained.state_table import StateTable

SCHEMA = {"type": "object", "properties": {"name": {"type": "string", "maxLength": 6},
                                           "n": {"type": "integer", "minimum": 0, "maximum": 99}},
          "required": ["name"]}


@pytest.fixture(scope="module")
def compiled(info) -> CompiledGrammar:
    text = '{"name":"Bob é","n":42}{"name":"x"}'
    vocab = info.outlines_vocabulary(set(info.encode(text)))
    return CompiledGrammar(schema_to_regex(SCHEMA), info, vocab)


def bits(packed: np.ndarray, vocab: int) -> set[int]:
    return set(np.flatnonzero(np.unpackbits(packed.view(np.uint8), count=vocab, bitorder="little")).tolist())


def test_walk_finds_every_index_state_and_rows_match(compiled, info):
    index, table = compiled.index, compiled.table
    # outlines' own states minus the one before the sentinel and the one after END
    expected = set(index.get_transitions()) - {index.get_initial_state(), *index.get_final_states()}
    assert table.complete and set(table.row_of) == expected
    eos = set(info.eos_token_ids)
    for state in expected:
        allowed = {t for t in index.get_allowed_tokens(state) if t < len(info.token_bytes)}
        final = compiled.is_final(state)
        assert bits(compiled.packed_mask(state), info.vocab_size) == allowed | (eos if final else set())
        assert compiled.has_text_tokens(state) == bool(allowed)


def test_states_past_the_cap_are_computed_lazily(compiled, info):
    capped = StateTable(compiled.index, info, compiled.start, max_bytes=3 * compiled.table.words * 4)
    assert capped.rows.shape[0] == 3 and not capped.complete
    for state in compiled.table.row_of:
        row, final, text = capped.lookup(state)
        assert np.array_equal(row, compiled.packed_mask(state))
        assert (final, text) == (compiled.is_final(state), compiled.has_text_tokens(state))


def test_mask_rows_follow_a_walk(compiled, info):
    """apply_grammar_masks over a mixed batch: each row allows exactly the grammar's set."""
    g = Grammar(compiled)
    logits = torch.zeros(2, info.vocab_size)
    for t in info.encode('{"name":"Bob é","n":42}'):
        logits.zero_()
        apply_grammar_masks([None, g], logits)
        assert torch.all(logits[0] == 0)
        assert set(torch.nonzero(logits[1] == 0).flatten().tolist()) == set(g.allowed_token_ids())
        assert t in g.allowed_token_ids()
        g.advance(t)
    assert g.accepts_eos() and min(info.eos_token_ids) in g.allowed_token_ids()


def test_compile_cache_is_bounded_by_table_bytes(info):
    c = GrammarCompiler(info, cache_bytes=1)
    try:
        a = c.compile("regex", r"[0-9]{3}")
        c.compile("regex", r"[a-c]{2}")
        assert c.compile_async("regex", r"[0-9]{3}").result() is not a  # evicted, rebuilt
    finally:
        c.shutdown()
