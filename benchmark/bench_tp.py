"""Tensor parallelism on the CPU (gloo): decode tokens/s of tp_size=1 vs tp_size=2 on a random
Llama of realistic width, at decode batch 1 and 16, and the share of rank 0's time spent in
all-reduce and all-gather (timed around the collectives).

    python benchmark/bench_tp.py [--hidden 1024] [--layers 8] [--new-tokens 32] [--repeats 3]

The two ranks split this machine's cores (each gets cores // 2 threads), so on a CPU the gain
is what splitting the products over processes buys against the all-reduces it adds."""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

from sgl.runtime import Engine
from sgl.runtime.distributed import comm

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests", "runtime"))


class CollectiveTimer:
    """Wall time rank 0 spends inside all-reduce / all-gather (this process only)."""

    def __init__(self) -> None:
        self.seconds, self.calls = 0.0, 0
        for name in ("all_reduce", "all_gather_last"):
            original = getattr(comm.TPGroup, name)
            setattr(comm.TPGroup, name, self._timed(original))

    def _timed(self, fn):
        def wrapper(group, x):
            start = time.perf_counter()
            try:
                return fn(group, x)
            finally:
                self.seconds += time.perf_counter() - start
                self.calls += 1
        return wrapper


def checkpoint(folder: str, hidden: int, layers: int) -> str:
    from llama_fixtures import save_tiny_checkpoint
    from sgl.runtime.loader import default_model_path
    from sgl.runtime.loader.gguf_file import converted_folder
    from transformers import LlamaConfig

    cfg = LlamaConfig(vocab_size=49152, hidden_size=hidden, intermediate_size=hidden * 11 // 4, num_hidden_layers=layers,
                      num_attention_heads=hidden // 64, num_key_value_heads=hidden // 256, max_position_embeddings=2048,
                      initializer_range=0.02, architectures=["LlamaForCausalLM"], tie_word_embeddings=False)
    return save_tiny_checkpoint(cfg, folder, converted_folder(default_model_path()))


def run(folder: str, tp: int, batch: int, new: int, repeats: int, timer: CollectiveTimer) -> tuple[float, float]:
    """(median tokens/s, share of the best run's wall time in collectives)."""
    engine = Engine(folder, tp_size=tp, dtype="float32", max_total_tokens=8192, context_length=1024)
    try:
        prompts = [[5 + i, 17, 29, 31, 43, 59, 61, 71] for i in range(batch)]
        params = {"max_new_tokens": new, "temperature": 0, "ignore_eos": True}
        engine.generate(input_ids=prompts, sampling_params={**params, "max_new_tokens": 2})  # warm up
        rates, shares = [], []
        for _ in range(repeats):
            engine.flush_cache()
            timer.seconds = 0.0
            start = time.perf_counter()
            engine.generate(input_ids=prompts, sampling_params=params)
            wall = time.perf_counter() - start
            rates.append(batch * new / wall)
            shares.append(timer.seconds / wall)
        return statistics.median(rates), statistics.median(shares)
    finally:
        engine.shutdown()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--hidden", type=int, default=1024)
    ap.add_argument("--layers", type=int, default=8)
    ap.add_argument("--new-tokens", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    timer = CollectiveTimer()
    with tempfile.TemporaryDirectory() as tmp:
        folder = checkpoint(tmp, args.hidden, args.layers)
        print(f"random Llama: hidden {args.hidden}, {args.layers} layers, float32, {os.cpu_count()} cores; "
              f"load {os.getloadavg()[0]:.1f}")
        for batch in (1, 16):
            one, _ = run(folder, 1, batch, args.new_tokens, args.repeats, timer)
            two, share = run(folder, 2, batch, args.new_tokens, args.repeats, timer)
            print(f"decode batch {batch:2d}: tp=1 {one:7.1f} tok/s  tp=2 {two:7.1f} tok/s  "
                  f"scaling {two / one:.2f}x  rank 0 in all-reduce/gather {share:.0%}")


if __name__ == "__main__":
    main()
