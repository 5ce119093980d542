"""Tensor parallelism: each rank's resident weight memory at tp_size=1 vs 2 on random models of
realistic width (a Llama and a Qwen2-MoE, hidden 1024 by default).

    python benchmark/tp_memory.py [--hidden 1024] [--layers 8] [--dtype bfloat16]

Per rank: the bytes of its parameters (what apply_tp left it) and its process's resident
anonymous memory (RssAnon: weights, the KV pool and the heap, not the shared libraries),
total RSS after loading, and peak RSS (a rank that read the whole model would peak above it). Each tp_size runs in a fresh process, so one run's memory does not
linger in the next's figures. KV pools are kept small (max_total_tokens) so weights dominate."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests", "runtime"))


def checkpoint(folder: str, arch: str, hidden: int, layers: int) -> str:
    from llama_fixtures import save_tiny_checkpoint
    from sgl.runtime.loader import default_model_path
    from sgl.runtime.loader.gguf_file import converted_folder
    from transformers import LlamaConfig, Qwen2MoeConfig

    common = dict(vocab_size=49152, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=hidden // 64,
                  num_key_value_heads=hidden // 256, max_position_embeddings=2048, initializer_range=0.02,
                  tie_word_embeddings=False)
    if arch == "llama":
        cfg = LlamaConfig(intermediate_size=hidden * 11 // 4, architectures=["LlamaForCausalLM"], **common)
    else:  # 8 experts of hidden * 11 // 16 features, top 2, a shared expert of hidden * 11 // 4
        cfg = Qwen2MoeConfig(num_experts=8, num_experts_per_tok=2, moe_intermediate_size=hidden * 11 // 16,
                             shared_expert_intermediate_size=hidden * 11 // 4, intermediate_size=hidden * 11 // 4,
                             architectures=["Qwen2MoeForCausalLM"], **common)
    return save_tiny_checkpoint(cfg, folder, converted_folder(default_model_path()))


def _memory(pid: int) -> dict[str, int]:
    """RssAnon, VmRSS and VmHWM (peak RSS, loading included) of a process, in bytes (Linux /proc)."""
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("RssAnon", "VmRSS", "VmHWM"):
                out[key] = int(value.split()[0]) * 1024
    return out


def _param_bytes(model) -> int:
    return sum(p.numel() * p.element_size() for p in model.parameters())


def child(folder: str, tp: int, dtype: str) -> None:
    """One engine at tp_size=tp: prints a JSON list with one entry per rank."""
    from sgl.runtime import Engine

    engine = Engine(folder, tp_size=tp, dtype=dtype, max_total_tokens=256, context_length=256)
    try:
        engine.generate(input_ids=[5, 17, 29], sampling_params={"max_new_tokens": 2, "temperature": 0})
        ranks = [{"rank": 0, "params": _param_bytes(engine._scheduler.runner.model), **_memory(os.getpid())}]
        for rank, proc in enumerate(engine._tp.procs if engine._tp is not None else [], start=1):
            ranks.append({"rank": rank, **_memory(proc.pid)})
    finally:
        engine.shutdown()
    for entry in ranks[1:]:
        # every rank's shapes are rank 0's (vocab rows padded to ceil(vocab / tp), rank-0-only
        # biases held as zeros elsewhere: distributed/tp_shard.py), so its parameter bytes are too
        entry["params"] = ranks[0]["params"]
    print("RESULT " + json.dumps(ranks))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--hidden", type=int, default=1024)
    ap.add_argument("--layers", type=int, default=8)
    ap.add_argument("--dtype", default="bfloat16")
    ap.add_argument("--child", nargs=2, metavar=("FOLDER", "TP"))
    args = ap.parse_args()
    if args.child:
        child(args.child[0], int(args.child[1]), args.dtype)
        return
    mib = 1 << 20
    print(f"hidden {args.hidden}, {args.layers} layers, {args.dtype}; load {os.getloadavg()[0]:.1f}")
    for arch in ("llama", "qwen2_moe"):
        with tempfile.TemporaryDirectory() as tmp:
            folder = checkpoint(tmp, arch, args.hidden, args.layers)
            base = None
            for tp in (1, 2):
                out = subprocess.run([sys.executable, __file__, "--dtype", args.dtype, "--child", folder, str(tp)],
                                     capture_output=True, text=True, check=True).stdout
                ranks = json.loads(out.split("RESULT ", 1)[1])
                base = base or ranks[0]
                for r in ranks:
                    print(f"{arch:9s} tp={tp} rank {r['rank']}: params {r['params'] / mib:7.1f} MiB "
                          f"({r['params'] / base['params']:.2f} of tp=1)  RssAnon {r['RssAnon'] / mib:7.1f} MiB "
                          f"({r['RssAnon'] / base['RssAnon']:.2f}; less params {(r['RssAnon'] - r['params']) / mib:5.1f})  "
                      f"RSS {r['VmRSS'] / mib:7.1f}  peak {r['VmHWM'] / mib:7.1f} MiB")


if __name__ == "__main__":
    main()
