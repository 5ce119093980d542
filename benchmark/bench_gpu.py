"""The engine on CUDA against transformers, side by side in one process, on a random
Llama-3-8B-shaped model in bf16: prefill tokens/s (a 1,024-token prompt) and decode tokens/s at
batch 1, 16 and 64. Each figure is the median of --repeats runs, the two sides in turn after a
warm-up each. Attention kernels against SDPA on the same shapes: benchmark/bench_triton.py.

    .venv/bin/python benchmark/bench_gpu.py [--layers 32] [--repeats 3] [--decode-tokens 64]

--layers scales the depth down (every other dimension stays Llama-3-8B's) where time or memory
is short. Needs a GPU: exits with a message without one.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

import torch


def timed(fn) -> float:
    torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    torch.cuda.synchronize()
    return time.perf_counter() - start


def paired_medians(ours, theirs, repeats: int) -> tuple[float, float]:
    """Median seconds of each side, run in turn after one untimed warm-up each."""
    timed(ours), timed(theirs)
    pairs = [(timed(ours), timed(theirs)) for _ in range(repeats)]
    return statistics.median(p[0] for p in pairs), statistics.median(p[1] for p in pairs)


def llama3_8b_config(layers: int):
    from transformers import LlamaConfig

    return LlamaConfig(vocab_size=128256, hidden_size=4096, intermediate_size=14336, num_hidden_layers=layers,
                       num_attention_heads=32, num_key_value_heads=8, max_position_embeddings=8192,
                       rope_theta=500000.0, rms_norm_eps=1e-5, bos_token_id=1, eos_token_id=2)


def save_random_model(config, folder: str, tokenizer_folder: str) -> None:
    """Random bf16 weights (built on the GPU, where init is fast) and the default model's
    tokenizer files (ids past its vocabulary are never sampled as text here)."""
    import shutil

    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    with torch.device("cuda"):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    model.save_pretrained(folder)
    del model
    for name in os.listdir(tokenizer_folder):
        if name.startswith(("tokenizer", "special_tokens")):
            shutil.copy(os.path.join(tokenizer_folder, name), folder)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--layers", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--decode-tokens", type=int, default=64)
    args = ap.parse_args()
    if not torch.cuda.is_available():
        sys.exit("bench_gpu.py needs a CUDA device (none is visible)")

    from sgl.runtime import Engine
    from sgl.runtime.loader import default_model_path
    from sgl.runtime.loader.gguf_file import converted_folder
    from transformers import AutoModelForCausalLM

    with tempfile.TemporaryDirectory() as folder:
        tokenizer_folder = converted_folder(default_model_path())  # the default model's tokenizer
        save_random_model(llama3_8b_config(args.layers), folder, tokenizer_folder)
        hf = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.bfloat16, device_map="cuda").eval()
        ours = Engine(folder, device="cuda", dtype="bfloat16", mem_fraction_static=0.5)
        torch.manual_seed(0)
        rows = []

        prompt = torch.randint(100, 40000, (1024,)).tolist()

        def ours_prefill() -> None:
            ours.flush_cache()
            ours.generate(input_ids=prompt, sampling_params={"max_new_tokens": 1, "temperature": 0})

        def hf_prefill() -> None:
            with torch.inference_mode():
                hf.generate(torch.tensor([prompt], device="cuda"), max_new_tokens=1, do_sample=False)

        a, b = paired_medians(ours_prefill, hf_prefill, args.repeats)
        rows.append(("prefill tokens/s (1,024-token prompt)", 1024 / a, 1024 / b))
        n = args.decode_tokens
        for bs in (1, 16, 64):
            prompts = [torch.randint(100, 40000, (16,)).tolist() for _ in range(bs)]

            def ours_decode(prompts=prompts) -> None:
                ours.flush_cache()
                ours.generate(input_ids=prompts, sampling_params={"max_new_tokens": n, "temperature": 0,
                                                                  "ignore_eos": True})

            def hf_decode(prompts=prompts, bs=bs) -> None:
                with torch.inference_mode():
                    hf.generate(torch.tensor(prompts, device="cuda"),
                                attention_mask=torch.ones(bs, 16, dtype=torch.long, device="cuda"),
                                max_new_tokens=n, min_new_tokens=n, do_sample=False)

            a, b = paired_medians(ours_decode, hf_decode, args.repeats)
            rows.append((f"decode tokens/s, batch {bs} ({n} tokens each)", bs * n / a, bs * n / b))
            print(rows[-1], flush=True)
        ours.shutdown()

    print(f"\nrandom Llama-3-8B shape, {args.layers} layers, bf16, {torch.cuda.get_device_name()}, "
          f"median of {args.repeats}")
    print(f"{'workload':<44}{'sgl':>12}{'transformers':>14}{'ratio':>8}")
    for name, a, b in rows:
        print(f"{name:<44}{a:>12.1f}{b:>14.1f}{a / b:>7.2f}x")


if __name__ == "__main__":
    main()
