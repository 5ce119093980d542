"""MoE engine vs transformers on the CPU, bf16, side by side in one process: a random
Mixtral-shaped model (8 experts, top-2, hidden 1,024, intermediate 3,584, GQA 16/4 heads) of a
few layers, so it loads and runs in minutes.

Prints prefill tokens/s (batch 1 x 512 tokens, batch 16 x 64) and decode tokens/s (batch 1
and 16, --decode-tokens each), each the median of --repeats runs with the sides in turn after
a warm-up each (bench_engine.paired_median_times); the ratio is ours / transformers.

    .venv/bin/python benchmark/bench_moe.py [--layers 4] [--repeats 3] [--decode-tokens 32]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_engine import decode_workload, paired_median_times  # noqa: E402


def random_mixtral(folder: str, layers: int):
    """A random bf16 Mixtral checkpoint in `folder` with the default model's tokenizer; returns
    transformers' model on the same weights."""
    from sgl.runtime.loader import default_model_path
    from sgl.runtime.loader.gguf_file import converted_folder
    from transformers import AutoModelForCausalLM, MixtralConfig

    tokenizer = converted_folder(default_model_path())
    config = MixtralConfig(vocab_size=49152, hidden_size=1024, intermediate_size=3584, num_hidden_layers=layers,
                           num_attention_heads=16, num_key_value_heads=4, num_local_experts=8,
                           num_experts_per_tok=2, max_position_embeddings=4096, bos_token_id=1, eos_token_id=2,
                           architectures=["MixtralForCausalLM"])
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16).eval()
    model.save_pretrained(folder)
    for name in os.listdir(tokenizer):
        if name.startswith(("tokenizer", "special_tokens")):
            with open(os.path.join(tokenizer, name), "rb") as src, open(os.path.join(folder, name), "wb") as dst:
                dst.write(src.read())
    return model


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--decode-tokens", type=int, default=32)
    ap.add_argument("--skip-transformers", action="store_true")
    args = ap.parse_args()

    from sgl.runtime import Engine

    folder = tempfile.mkdtemp(prefix="bench_moe_")
    hf = random_mixtral(folder, args.layers)
    if args.skip_transformers:
        hf = None
    engine = Engine(folder, dtype="bfloat16", max_total_tokens=8192)
    torch.manual_seed(1)
    rows: list[tuple[str, float, float | None]] = []

    def run(name: str, ours, theirs, tokens: int) -> None:
        ours_s, theirs_s = paired_median_times(ours, theirs if hf is not None else None, args.repeats)
        rows.append((name, tokens / ours_s, tokens / theirs_s if theirs_s else None))
        print(rows[-1], flush=True)

    for bs, length in ((1, 512), (16, 64)):
        prompts = torch.randint(100, 40000, (bs, length)).tolist()

        def ours_prefill(prompts=prompts) -> None:
            engine.flush_cache()
            engine.generate(input_ids=prompts, sampling_params={"max_new_tokens": 1, "temperature": 0})

        def hf_prefill(prompts=prompts) -> None:
            with torch.inference_mode():
                hf.generate(torch.tensor(prompts), attention_mask=torch.ones(len(prompts), len(prompts[0]),
                            dtype=torch.long), max_new_tokens=1, do_sample=False)

        run(f"prefill tokens/s, batch {bs} x {length}", ours_prefill, hf_prefill, bs * length)

    n = args.decode_tokens
    for bs in (1, 16):
        ours_decode, hf_decode = decode_workload(engine, hf, bs, n, 40000)
        run(f"decode tokens/s, batch {bs} ({n} tokens each)", ours_decode, hf_decode, bs * n)

    print(f"\nrandom Mixtral-shaped model: {args.layers} layers, hidden 1024, 8 experts top-2, bf16, "
          f"threads: {torch.get_num_threads()}, median of {args.repeats}")
    print(f"{'workload':<44}{'sgl':>10}{'transformers':>14}{'ratio':>8}")
    for name, a, b in rows:
        print(f"{name:<44}{a:>10.1f}{'' if b is None else f'{b:.1f}':>14}{'' if b is None else f'{a / b:.2f}x':>8}")
    engine.shutdown()


if __name__ == "__main__":
    main()
