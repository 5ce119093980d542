"""Eight questions about one image: an sgl program that forks eight ways after the image vs
eight `generate` calls in transformers, on a random LLaVA 1.5 of realistic shape (a CLIP
ViT-B/16 tower at 224 px, 196 image tokens, over the default model's text shape), both bf16.

    python benchmark/bench_multimodal.py [--new-tokens 16] [--repeats 3] [--dtype bfloat16|float32]

sgl: the image is encoded once and its KV computed once (the radix cache keys it by content);
the eight children prefill only their question and decode together. transformers: each call
runs the vision tower and the whole prompt again. Both sides get the same prompt texts and
greedy decoding of exactly --new-tokens tokens; model loading is not timed; the caches are
flushed before each timed run, and the sides alternate after a warm-up of each. Reports the median wall time of each side, the ratio, and how
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


class SglSide:
    """Our engine: one program run forks eight ways after the image."""

    def __init__(self, folder: str, dtype: str) -> None:
        self.rt = sgl.Runtime(model_path=folder, dtype=dtype)
        eight_questions.run(image=picture(1), new_tokens=2, backend=self.rt, temperature=0).sync()  # warm-up
        self.prompts: list[str] = []  # the eight texts each child continued, for transformers
        eight_questions.run(image=picture(0), new_tokens=1, prompts=self.prompts, backend=self.rt,
                            temperature=0).sync()

    def once(self, new_tokens: int) -> tuple[float, int]:
        """-> (wall seconds, vision encoder runs) of one timed run."""
        self.rt.flush_cache()  # also empties the encoder cache: every run encodes the image afresh
        before = self.rt.engine.get_server_info()["vision_encoder_runs"]
        t0 = time.perf_counter()
        st = eight_questions.run(image=picture(0), new_tokens=new_tokens, backend=self.rt, temperature=0)
        st.sync()
        seconds = time.perf_counter() - t0
        assert st.error() is None, st.error()
        return seconds, self.rt.engine.get_server_info()["vision_encoder_runs"] - before


class TransformersSide:
    """transformers: eight `generate` calls, each running the tower and the whole prompt."""

    def __init__(self, folder: str, prompts: list[str], dtype: torch.dtype) -> None:
        from transformers import AutoProcessor, LlavaForConditionalGeneration

        self.processor = AutoProcessor.from_pretrained(folder, use_fast=False)
        self.model = LlavaForConditionalGeneration.from_pretrained(folder, dtype=dtype).eval()
        self.prompts, self.dtype, self.calls = prompts, dtype, 0
        self.model.model.vision_tower.register_forward_hook(lambda *a: setattr(self, "calls", self.calls + 1))
        self.generate(prompts[:1], picture(1), 2)  # warm-up

    @torch.inference_mode()
    def generate(self, prompts: list[str], image: Image.Image, new_tokens: int) -> None:
        for text in prompts:
            enc = self.processor(text=text, images=[image], return_tensors="pt")
            enc["pixel_values"] = enc["pixel_values"].to(self.dtype)
            self.model.generate(**enc, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False)

    def once(self, new_tokens: int) -> tuple[float, int]:
        self.calls = 0
        t0 = time.perf_counter()
        self.generate(self.prompts, picture(0), new_tokens)
        return time.perf_counter() - t0, self.calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--new-tokens", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float32"])
    args = parser.parse_args()
    folder = checkpoint()
    ours_side = SglSide(folder, args.dtype)
    theirs_side = TransformersSide(folder, ours_side.prompts, getattr(torch, args.dtype))
    runs: dict[str, list[tuple[float, int]]] = {"sgl": [], "hf": []}
    for i in range(args.repeats):  # the sides alternate, and which goes first alternates too
        order = [("sgl", ours_side), ("hf", theirs_side)]
        for name, side in order if i % 2 == 0 else order[::-1]:
            runs[name].append(side.once(args.new_tokens))
    ours_side.rt.shutdown()
    ours, theirs = (statistics.median(t for t, _ in runs[k]) for k in ("sgl", "hf"))
    print(f"eight questions about one image, {args.new_tokens} new tokens each, {args.dtype}, "
          f"median of {args.repeats}, sides alternating (load {os.getloadavg()[0]:.1f} on {os.cpu_count()} cpus)")
    print("| side | wall s (each run) | vision encoder runs per run |")
    print("|---|---|---|")
    for label, key, median in (("sgl fork(8)", "sgl", ours), ("transformers 8 x generate", "hf", theirs)):
        each = ", ".join(f"{t:.2f}" for t, _ in runs[key])
        print(f"| {label} | {median:.2f} ({each}) | {runs[key][-1][1]} |")
    print(f"ratio (transformers / sgl): {theirs / ours:.2f}x")


if __name__ == "__main__":
    main()
