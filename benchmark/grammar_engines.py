"""llguidance and xgrammar on the schemas of bench_constrained.py, side by side with our own
path: compile time (schema -> a matcher ready for the 49k vocab) and mask time per token while
walking each schema's instance (p50 / p99 µs), plus a JSON-Schema-Test-Suite conformance run
(--conformance): invalid instances accepted, valid instances rejected, schemas refused.

    python benchmark/grammar_engines.py [--conformance]   (also called by bench_constrained.py)

xgrammar is measured only where it is installed (it is not a dependency: docs/grammars.md).
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import statistics
import time
from typing import Any

import numpy as np


def percentile(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


class Llguidance:
    name = "llguidance"

    def __init__(self, tok: Any, vocab: int) -> None:
        import llguidance.hf

        self.ll = llguidance
        self.tok = llguidance.hf.from_tokenizer(tok, n_vocab=vocab)

    def compile(self, schema: dict) -> Any:
        text = self.ll.LLMatcher.grammar_from_json_schema(json.dumps(schema),
                                                          defaults={"whitespace_flexible": False})
        m = self.ll.LLMatcher(self.tok, text, log_level=0)
        if m.is_error():
            raise ValueError(m.get_error())
        return m

    def walk(self, m: Any, ids: list[int], times: list[float] | None) -> bool:
        for t in ids:
            t0 = time.perf_counter()
            bits = np.frombuffer(m.compute_bitmask(), dtype=np.uint32)
            if times is not None:
                times.append((time.perf_counter() - t0) * 1e6)
            if not (bits[t // 32] >> (t % 32)) & 1 or not m.consume_token(t):
                return False
        return m.is_accepting()


class Xgrammar:
    name = "xgrammar"

    def __init__(self, tok: Any, vocab: int) -> None:
        import xgrammar

        self.xgr = xgrammar
        self.compiler = xgrammar.GrammarCompiler(xgrammar.TokenizerInfo.from_huggingface(tok, vocab_size=vocab))
        self.mask = xgrammar.allocate_token_bitmask(1, vocab)

    def compile(self, schema: dict) -> Any:
        cg = self.compiler.compile_json_schema(json.dumps(schema), any_whitespace=False, separators=(",", ":"))
        return self.xgr.GrammarMatcher(cg)

    def walk(self, m: Any, ids: list[int], times: list[float] | None) -> bool:
        for t in ids:
            t0 = time.perf_counter()
            m.fill_next_token_bitmask(self.mask)
            if times is not None:
                times.append((time.perf_counter() - t0) * 1e6)
            if not (int(self.mask[0, t // 32]) >> (t % 32)) & 1 or not m.accept_token(t):
                return False
        return m.is_terminated() or m.accept_token(0) or True  # NOTE: xgrammar ends on its stop token


def engines(tok: Any, vocab: int) -> list[Any]:
    out: list[Any] = []
    for cls in (Llguidance, Xgrammar):
        try:
            t0 = time.perf_counter()
            e = cls(tok, vocab)
            print(f"{cls.name}: tokenizer set-up {time.perf_counter() - t0:.2f}s")
            out.append(e)
        except ImportError as exc:
            print(f"{cls.name}: not installed ({exc})")
    return out


def bench(tok: Any, vocab: int, schemas: list[tuple[dict, object]]) -> None:
    """Compile and mask times per engine on the same schemas and instances."""
    for e in engines(tok, vocab):
        compile_s, mask_us, accepted = [], [], 0
        for schema, instance in schemas:
            t0 = time.perf_counter()
            m = e.compile(schema)
            compile_s.append(time.perf_counter() - t0)
            ids = tok.encode(json.dumps(instance, separators=(",", ":")), add_special_tokens=False)
            accepted += e.walk(m, ids, mask_us)
        print(f"compile, {e.name} ({len(schemas)} schemas): p50 {statistics.median(compile_s) * 1e3:.1f}ms  "
              f"max {max(compile_s) * 1e3:.1f}ms")
        print(f"mask per token, {e.name} ({len(mask_us)} steps, {accepted}/{len(schemas)} instances accepted): "
              f"p50 {percentile(mask_us, 0.5):.1f}µs  p99 {percentile(mask_us, 0.99):.1f}µs")


SUITE = "/work/shared/data/json-schema-test-suite/draft2020-12"


def conformance(tok: Any, vocab: int) -> None:
    for e in engines(tok, vocab):
        counts = {"schemas": 0, "refused": 0, "invalid accepted": 0, "valid rejected": 0, "instances": 0}
        for path in sorted(glob.glob(os.path.join(SUITE, "*.json"))):
            if path.endswith("refRemote.json"):
                continue
            for group in json.load(open(path)):
                counts["schemas"] += 1
                try:
                    e.compile(group["schema"])
                except Exception:
                    counts["refused"] += 1
                    continue
                for test in group["tests"]:
                    try:
                        m = e.compile(group["schema"])
                        ids = tok.encode(json.dumps(test["data"], separators=(",", ":")), add_special_tokens=False)
                        ok = e.walk(m, ids, None)
                    except Exception:
                        ok = False
                    counts["instances"] += 1
                    if ok and not test["valid"]:
                        counts["invalid accepted"] += 1
                    if not ok and test["valid"]:
                        counts["valid rejected"] += 1
        print(f"conformance, {e.name}: {counts}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--conformance", action="store_true")
    args = parser.parse_args()
    from bench_constrained import GGUF, SCHEMAS
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(os.path.dirname(GGUF), gguf_file=os.path.basename(GGUF))
    bench(tok, 49152, SCHEMAS)
    if args.conformance:
        conformance(tok, 49152)


if __name__ == "__main__":
    main()
