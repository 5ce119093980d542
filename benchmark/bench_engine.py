"""Engine vs transformers, side by side in one process, on the default model in bfloat16.

Prints: prefill tokens/s (512-token prompt), decode tokens/s at batch 1 and 16, and the wall
time of 64 requests sharing a 1,000-token prefix. Each figure is the median of --repeats runs
(prefill and decode: the two sides in turn, after a warm-up each); the ratio column is ours /
transformers (for wall time: transformers / ours).

    .venv/bin/python benchmark/bench_engine.py [--repeats 3] [--decode-tokens 64]

SGL_CPU_ISA=avx2 (or none) stands for a CPU without bf16 dot products, so it caps torch's
oneDNN and ATen at the same level (ONEDNN_MAX_CPU_ISA, ATEN_CPU_CAPABILITY, unless set):
transformers, and our torch ops, then run as they would on such a CPU, not on this one's
AVX-512 BF16.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

# before torch loads: both libraries read these once
_TORCH_CAPS = {"avx2": ("AVX2", "avx2"), "none": ("SSE41", "default")}
if os.environ.get("SGL_CPU_ISA", "").strip().lower() in _TORCH_CAPS:
    _onednn, _aten = _TORCH_CAPS[os.environ["SGL_CPU_ISA"].strip().lower()]
    os.environ.setdefault("ONEDNN_MAX_CPU_ISA", _onednn)
    os.environ.setdefault("ATEN_CPU_CAPABILITY", _aten)

import torch  # noqa: E402


def median_time(fn, repeats: int) -> float:
    """Median wall time of fn. After each run the main thread's OpenMP workers are freed, so each
    side runs with only its own pool alive (transformers runs on this thread, our model on the
    engine's scheduler thread, which frees its pool when idle): see runtime/openmp.py."""
    from sgl.runtime.openmp import release_thread_pool

    times = []
    for _ in range(repeats):
        release_thread_pool()
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    release_thread_pool()
    return statistics.median(times)


def paired_median_times(ours, theirs, repeats: int) -> tuple[float, float | None]:
    """Median wall times of two functions run in turn (ours, theirs, ours, ...) after one untimed
    warm-up each, so a burst of load from the machine's neighbours slows both sides alike rather
    than one side's whole series; theirs None: only ours runs."""
    if theirs is not None:
        median_time(theirs, 1)
    median_time(ours, 1)
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(repeats):
        times[0].append(median_time(ours, 1))
        if theirs is not None:
            times[1].append(median_time(theirs, 1))
    return statistics.median(times[0]), statistics.median(times[1]) if theirs is not None else None


def decode_workload(engine, hf, bs: int, n: int, vocab: int):
    """(ours, theirs): greedy decoding of n tokens for bs distinct 16-token prompts, the cache
    flushed so nothing is reused."""
    prompts = [torch.randint(100, vocab, (16,)).tolist() for _ in range(bs)]
    params = {"max_new_tokens": n, "temperature": 0, "ignore_eos": True}

    def ours() -> None:
        engine.flush_cache()
        engine.generate(input_ids=prompts, sampling_params=params)

    def theirs() -> None:
        with torch.inference_mode():
            hf.generate(torch.tensor(prompts), attention_mask=torch.ones(bs, 16, dtype=torch.long),
                        max_new_tokens=n, min_new_tokens=n, do_sample=False)

    return ours, theirs


def load_transformers(path: str, num_heads: int, num_kv_heads: int, dtype: torch.dtype):
    """transformers' own Llama with the very weights our loader reads from the GGUF."""
    from sgl.runtime.loader.gguf_file import converted_folder, iterate_gguf_weights
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(converted_folder(path))
    model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    state = dict(iterate_gguf_weights(path, num_heads, num_kv_heads))
    model.load_state_dict(state, strict=False)
    model.tie_weights()
    return model.eval()


def overhead_row(engine, n_dec: int, repeats: int, dtype: str) -> tuple[str, float, float, str]:
    """Per-step framework overhead: batch-1 decode on a copy of the default model's shape (same
    30 layers, vocab) with hidden size 64, where the matmuls cost next to nothing; in the
    benchmark's dtype, so each side takes the path its full-size decode takes."""
    import shutil
    import tempfile

    from sgl.runtime import Engine
    from sgl.runtime.loader.gguf_file import converted_folder
    from transformers import AutoConfig, AutoModelForCausalLM

    source = converted_folder(engine.model_path)
    config = AutoConfig.from_pretrained(source)
    config.hidden_size, config.intermediate_size, config.head_dim = 64, 128, 8
    config.num_attention_heads, config.num_key_value_heads = 8, 2
    with tempfile.TemporaryDirectory() as folder:
        torch.manual_seed(0)
        AutoModelForCausalLM.from_config(config, dtype=torch.float32).save_pretrained(folder)
        for name in os.listdir(source):
            if name.startswith("tokenizer") or name.endswith(".jinja"):
                shutil.copy(os.path.join(source, name), folder)
        hf = AutoModelForCausalLM.from_pretrained(folder, dtype=getattr(torch, dtype)).eval()
        ids = torch.randint(100, 40000, (16,)).tolist()
        with Engine(folder, dtype=dtype) as tiny:
            ours = median_time(lambda: tiny.generate(input_ids=ids, sampling_params={
                "max_new_tokens": n_dec, "temperature": 0, "ignore_eos": True}), repeats) / n_dec

            def hf_decode() -> None:
                with torch.inference_mode():
                    hf.generate(torch.tensor([ids]), attention_mask=torch.ones(1, 16, dtype=torch.long),
                                max_new_tokens=n_dec, min_new_tokens=n_dec, do_sample=False)

            theirs = median_time(hf_decode, repeats) / n_dec
    return (f"per-step overhead, batch 1 (30 layers, hidden 64, {dtype}): ms", ours * 1e3, theirs * 1e3, "lower")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--decode-tokens", type=int, default=64)
    ap.add_argument("--skip-transformers", action="store_true")
    ap.add_argument("--only", default="prefill,decode,shared,overhead",
                    help="comma-separated workloads to run: prefill, decode, shared, overhead")
    ap.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float32"],
                    help="both engines' dtype (bf16 is emulated, and slow, on CPUs without AVX-512 BF16)")
    args = ap.parse_args()

    from sgl.runtime import Engine

    engine = Engine(dtype=args.dtype)
    tok = engine.tokenizer
    mc = engine.model_config
    hf = None if args.skip_transformers else load_transformers(engine.model_path, mc.num_heads, mc.num_kv_heads,
                                                                   getattr(torch, args.dtype))
    torch.manual_seed(0)
    vocab = 40000  # ordinary tokens; stays clear of special ids
    prompt512 = torch.randint(100, vocab, (512,)).tolist()
    n_dec = args.decode_tokens
    only = set(args.only.split(","))
    rows: list[tuple[str, float, float | None, str]] = []

    # -- prefill: 512 tokens, one output token, cache flushed so nothing is reused --------------
    def ours_prefill() -> None:
        engine.flush_cache()
        engine.generate(input_ids=prompt512, sampling_params={"max_new_tokens": 1, "temperature": 0})

    def hf_prefill() -> None:
        with torch.inference_mode():
            hf.generate(torch.tensor([prompt512]), max_new_tokens=1, do_sample=False)

    if "prefill" in only:
        ours_s, theirs_s = paired_median_times(ours_prefill, hf_prefill if hf else None, args.repeats)
        ours, theirs = 512 / ours_s, (512 / theirs_s if theirs_s else None)
        rows.append(("prefill tokens/s (512-token prompt)", ours, theirs, "higher"))
        print(rows[-1], flush=True)

    # -- decode at batch 1 and 16: short distinct prompts, fixed output length ----------------------
    for bs in (1, 16) if "decode" in only else ():
        ours_decode, hf_decode = decode_workload(engine, hf, bs, n_dec, vocab)
        ours_s, theirs_s = paired_median_times(ours_decode, hf_decode if hf else None, args.repeats)
        ours, theirs = bs * n_dec / ours_s, (bs * n_dec / theirs_s if theirs_s else None)
        rows.append((f"decode tokens/s, batch {bs} ({n_dec} tokens each)", ours, theirs, "higher"))
        print(rows[-1], flush=True)

    # -- 64 requests sharing a 1,000-token prefix, 16 new tokens each ------------------------------
    prefix = torch.randint(100, vocab, (1000,)).tolist()
    shared = [prefix + torch.randint(100, vocab, (16,)).tolist() for _ in range(64)]
    params = {"max_new_tokens": 16, "temperature": 0, "ignore_eos": True}

    def ours_shared() -> None:
        engine.flush_cache()
        engine.generate(input_ids=shared, sampling_params=params)

    def hf_shared() -> None:  # batches of 16 (equal lengths: no padding needed)
        with torch.inference_mode():
            for i in range(0, 64, 16):
                hf.generate(torch.tensor(shared[i : i + 16]), max_new_tokens=16, min_new_tokens=16, do_sample=False)

    if "shared" in only:
        ours = median_time(ours_shared, args.repeats)
        theirs = median_time(hf_shared, max(1, args.repeats - 1)) if hf else None
        rows.append(("64 requests, shared 1,000-token prefix: wall s", ours, theirs, "lower"))

    if hf is not None and "overhead" in only:
        rows.append(overhead_row(engine, n_dec, args.repeats, args.dtype))
    from sgl.kernels.cpu import isa

    caps = {k: os.environ[k] for k in ("SGL_CPU_ISA", "ONEDNN_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY") if k in os.environ}
    print(f"\nmodel: {engine.model_path} ({engine.dtype}), threads: {torch.get_num_threads()}, "
          f"median of {args.repeats}, kernels: {isa().level.label} (torch bf16 native: {isa().torch_bf16}) {caps}")
    print(f"{'workload':<52}{'sgl':>12}{'transformers':>14}{'ratio':>8}")
    for name, a, b, better in rows:
        ratio = "" if b is None else f"{(a / b if better == 'higher' else b / a):.2f}x"
        print(f"{name:<52}{a:>12.1f}{'' if b is None else f'{b:.1f}':>14}{ratio:>8}")
    del tok
    engine.shutdown()


if __name__ == "__main__":
    main()
