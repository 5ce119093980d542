"""Eight questions about one image: an sgl program that forks eight ways after the image vs
eight `generate` calls in transformers, on a random LLaVA 1.5 of realistic shape (a CLIP
ViT-B/16 tower at 224 px, 196 image tokens, over the default model's text shape), both bf16.

    python benchmark/bench_multimodal.py [--new-tokens 16] [--repeats 3] [--dtype bfloat16|float32]

sgl: the image is encoded once and its KV computed once (the radix cache keys it by content);
the eight children prefill only their question and decode together. transformers: each call
runs the vision tower and the whole prompt again. Both sides get the same prompt texts and
greedy decoding of exactly --new-tokens tokens; model loading is not timed; the caches are
flushed before each timed run. Reports the median wall time of each side, the ratio, and how
many times each side ran the vision encoder per run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import numpy as np
import sgl
import torch
from PIL import Image

QUESTIONS = ["What color is the sky?", "How many people are there?", "Is it day or night?",
             "What is in the corner?", "Is there any text?", "What is the main object?",
             "Where might this be?", "What is the weather like?"]  # fmt: skip
CACHE = os.path.join(os.environ.get("TMPDIR", "/tmp"), "sgl-bench-llava-b16")


@sgl.function
def eight_questions(s, image, new_tokens: int, prompts: list | None = None):
    s += sgl.user(sgl.image(image) + "Look at the picture.")
    forks = s.fork(len(QUESTIONS))
    for f, q in zip(forks, QUESTIONS):
        f += sgl.user(q)
        f += sgl.assistant(sgl.gen("answer", max_tokens=new_tokens, ignore_eos=True))
    answers = [f["answer"] for f in forks]
    if prompts is not None:  # the texts each child's generation continued (for transformers)
        prompts += [f.text()[: f.text().rindex(a)] for f, a in zip(forks, answers)]


def checkpoint() -> str:
    """The random checkpoint (built once, then reused from CACHE)."""
    from sgl.runtime.loader import default_model_path
    from sgl.runtime.loader.gguf_file import converted_folder
    from sgl.runtime.multimodal.random_checkpoints import save_random_llava

    if os.path.exists(os.path.join(CACHE, "model.safetensors")):
        return CACHE
    tokenizer_folder = converted_folder(default_model_path())
    with open(os.path.join(tokenizer_folder, "config.json")) as f:
        c = json.load(f)
    text = {k: c[k] for k in ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                              "num_key_value_heads", "head_dim", "rms_norm_eps", "rope_parameters",
                              "max_position_embeddings")}
    vision = dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                  projection_dim=512, initializer_range=0.02)
    return save_random_llava(CACHE, tokenizer_folder, vision=vision, text={**text, "initializer_range": 0.02},
                             image_size=224, patch_size=16)


def picture(seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (240, 320, 3), dtype=np.uint8))


def run_sgl(folder: str, new_tokens: int, repeats: int, dtype: str) -> tuple[list[float], list[int], list[str]]:
    rt = sgl.Runtime(model_path=folder, dtype=dtype)
    eight_questions.run(image=picture(1), new_tokens=2, backend=rt, temperature=0).sync()  # warm-up
    prompts: list[str] = []
    eight_questions.run(image=picture(0), new_tokens=1, prompts=prompts, backend=rt, temperature=0).sync()
    times, runs = [], []
    for _ in range(repeats):
        rt.flush_cache()  # also empties the encoder cache: every run encodes the image afresh
        before = rt.engine.get_server_info()["vision_encoder_runs"]
        t0 = time.perf_counter()
        st = eight_questions.run(image=picture(0), new_tokens=new_tokens, backend=rt, temperature=0)
        st.sync()
        times.append(time.perf_counter() - t0)
        assert st.error() is None, st.error()
        runs.append(rt.engine.get_server_info()["vision_encoder_runs"] - before)
    rt.shutdown()
    return times, runs, prompts


def run_transformers(folder: str, prompts: list[str], new_tokens: int, repeats: int,
                     dtype: torch.dtype) -> tuple[list[float], list[int]]:
    from transformers import AutoProcessor, LlavaForConditionalGeneration

    processor = AutoProcessor.from_pretrained(folder, use_fast=False)
    model = LlavaForConditionalGeneration.from_pretrained(folder, dtype=dtype).eval()
    calls = [0]
    model.model.vision_tower.register_forward_hook(lambda *a: calls.__setitem__(0, calls[0] + 1))
    image = picture(0)

    @torch.inference_mode()
    def once() -> None:
        for text in prompts:
            enc = processor(text=text, images=[image], return_tensors="pt")
            enc["pixel_values"] = enc["pixel_values"].to(dtype)
            model.generate(**enc, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False)

    prompts_1 = prompts[:1]
    for text in prompts_1:  # warm-up
        enc = processor(text=text, images=[picture(1)], return_tensors="pt")
        enc["pixel_values"] = enc["pixel_values"].to(dtype)
        with torch.inference_mode():
            model.generate(**enc, max_new_tokens=2, do_sample=False)
    times, runs = [], []
    for _ in range(repeats):
        calls[0] = 0
        t0 = time.perf_counter()
        once()
        times.append(time.perf_counter() - t0)
        runs.append(calls[0])
    return times, runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--new-tokens", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float32"])
    args = parser.parse_args()
    folder = checkpoint()
    sgl_times, sgl_runs, prompts = run_sgl(folder, args.new_tokens, args.repeats, args.dtype)
    hf_times, hf_runs = run_transformers(folder, prompts, args.new_tokens, args.repeats, getattr(torch, args.dtype))
    ours, theirs = statistics.median(sgl_times), statistics.median(hf_times)
    print(f"eight questions about one image, {args.new_tokens} new tokens each, {args.dtype}, "
          f"median of {args.repeats} (load {os.getloadavg()[0]:.1f} on {os.cpu_count()} cpus)")
    print("| side | wall s | vision encoder runs per run |")
    print("|---|---|---|")
    print(f"| sgl fork(8) | {ours:.2f} | {sgl_runs[-1]} |")
    print(f"| transformers 8 x generate | {theirs:.2f} | {hf_runs[-1]} |")
    print(f"ratio (transformers / sgl): {theirs / ours:.2f}x")


if __name__ == "__main__":
    main()
