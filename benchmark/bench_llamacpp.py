"""Our engine against llama.cpp (llama-cpp-python) on the same GGUF file, batch-1 figures.

Prints, each the median of --repeats runs with the two sides in turn (ours, theirs, ours, ...):
prefill tokens/s (512-token prompt), decode tokens/s at batch 1, 16 requests sharing a 256-token
prefix (output tokens/s), the perplexity of a fixed text (quantization none, auto, llama.cpp),
and the fraction of the memory-bandwidth limit each decode figure reaches (weight bytes read
per token / the best read bandwidth measured before and after the workloads).

llama-cpp-python is not a dependency of sgl: it lives in its own environment, whose python is
--llama-python (default: $SGL_LLAMACPP_PYTHON, else this interpreter). That side runs as a
worker process of this same file, so each side keeps its model loaded between turns. Where
llama_cpp cannot be imported there, the llama.cpp column is skipped, and the script says so.

    .venv/bin/python benchmark/bench_llamacpp.py [--model F.gguf] [--llama-python PY] [--repeats 3]

Per CPU level: run ours under SGL_CPU_ISA=avx2 against a llama.cpp built for AVX2 only, in an
environment of its own (~12 minutes on 2 cores):

    python3 -m venv /tmp/llama-avx2 && CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON \
        -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_AVX512=OFF -DGGML_AVX512_VNNI=OFF -DGGML_AVX512_BF16=OFF \
        -DGGML_AVX_VNNI=OFF" /tmp/llama-avx2/bin/pip install llama-cpp-python==0.3.36 numpy
    SGL_CPU_ISA=avx2 .venv/bin/python benchmark/bench_llamacpp.py --llama-python /tmp/llama-avx2/bin/python
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys

TEXT = " ".join([
    "The history of the printing press begins in the fifteenth century, when Johannes Gutenberg combined "
    "movable metal type, oil-based ink and a screw press adapted from wine making. Within fifty years presses "
    "were at work in more than two hundred cities across Europe, and the price of books fell so far that "
    "reading spread from monasteries and courts to merchants and artisans.",
    "Pamphlets carried the arguments of the Reformation, newspapers followed in the next century, and "
    "scientists could compare their measurements in identical printed tables. A map engraved in Antwerp "
    "could be corrected in London and reprinted in Amsterdam, so errors were found and removed faster than "
    "any copyist could have managed.",
    "Rivers shape the land they cross. A young river in the mountains cuts a narrow valley with steep sides, "
    "carrying gravel and boulders when the snow melts in spring. Lower down the slope eases, the water slows, "
    "and the river begins to wander across a wide plain, dropping sand on the inside of each bend and "
    "eating into the outside, until a loop is cut off and left behind as a quiet lake.",
    "Near the sea the river spreads into a delta of channels and marshes, where the mud it has carried for "
    "hundreds of kilometres settles at last. Farmers have always been drawn to such places: the soil is deep "
    "and rich, water is close at hand, and boats can carry the harvest to market.",
    "To bake bread, mix flour, water, salt and a little yeast, then knead the dough until it is smooth and "
    "springs back when pressed. Leave it covered in a warm place for an hour or two, until it has doubled in "
    "size. Shape it into a loaf, let it rise once more, and bake it in a hot oven until the crust is brown "
    "and the loaf sounds hollow when tapped underneath.",
    "A computer program is a list of instructions that a machine follows exactly. The machine does not "
    "guess what the programmer meant; it does what the program says, which is why a single misplaced "
    "character can stop a large system. Good programmers therefore write small pieces that can be tested "
    "one at a time, name things clearly, and leave notes for the people who will read the code later.",
    "The moon has no air and no weather, so the footprints left by the astronauts who walked there more "
    "than fifty years ago are still sharp. By day its surface is hotter than boiling water; by night it is "
    "colder than anywhere on Earth. Its pull raises the tides, and over millions of years it has slowed "
    "the spin of our planet, lengthening the day by a small fraction of a second each century.",
    "In the market square the stalls open before sunrise. One sells apples and pears from the orchards on "
    "the hill, another fresh cheese wrapped in leaves, a third bread still warm from the oven. By noon the "
    "square is crowded with people comparing prices, meeting friends and carrying home baskets for the week.",
] * 2)


# ---- the llama.cpp side: a worker process, commands as JSON lines on stdin -------------------------
def worker(model: str, threads: int) -> None:
    from llama_cpp import Llama

    llm = Llama(model_path=model, n_ctx=2048, n_batch=512, n_threads=threads, verbose=False)
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        cmd = json.loads(line)
        ids = cmd.get("ids")
        if cmd["op"] == "prefill":
            llm.reset()
            llm.eval(ids)
            reply = {}
        elif cmd["op"] == "generate":  # each prompt in turn, greedy, n tokens (EOS not stopping)
            llm.reset()
            for prompt in cmd["prompts"]:
                for i, _ in enumerate(llm.generate(prompt, temp=0.0, reset=True)):
                    if i + 1 == cmd["n"]:
                        break
            reply = {}
        elif cmd["op"] == "perplexity":
            import numpy as np

            scorer = Llama(model_path=model, n_ctx=len(ids) + 8, n_batch=512, n_threads=threads,
                           logits_all=True, verbose=False)
            scorer.eval(ids)
            logits = np.asarray(scorer.scores[: len(ids) - 1], dtype=np.float64)
            top = logits.max(-1, keepdims=True)
            lse = (top + np.log(np.exp(logits - top).sum(-1, keepdims=True))).squeeze(-1)
            picked = logits[np.arange(len(ids) - 1), ids[1:]]
            reply = {"ppl": float(np.exp(-(picked - lse).mean()))}
            del scorer
        else:
            reply = {"error": cmd["op"]}
        print(json.dumps(reply), flush=True)


class LlamaSide:
    def __init__(self, python: str, model: str, threads: int) -> None:
        self.proc = subprocess.Popen([python, __file__, "--worker", model, "--threads", str(threads)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert json.loads(self.proc.stdout.readline())["ready"]

    def ask(self, **cmd) -> dict:
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=60)


def llama_importable(python: str) -> str | None:
    """None where `python` imports llama_cpp, else why not."""
    done = subprocess.run([python, "-c", "import llama_cpp; print(llama_cpp.__version__)"], capture_output=True, text=True)
    return None if done.returncode == 0 else (done.stderr.strip().splitlines() or ["?"])[-1]


def our_perplexity(engine, ids: list[int]) -> float:
    out = engine.generate(input_ids=ids, sampling_params={"max_new_tokens": 1, "temperature": 0},
                          return_logprob=True, logprob_start_len=0)
    values = [row[0] for row in out["meta_info"]["input_token_logprobs"] if row[0] is not None]
    return math.exp(-sum(values) / len(values))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=None, help="a GGUF file (default: the default model's Q4_1 file)")
    ap.add_argument("--llama-python", default=os.environ.get("SGL_LLAMACPP_PYTHON", sys.executable))
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--decode-tokens", type=int, default=64)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        return worker(args.worker, args.threads)

    import torch
    from bench_engine import paired_median_times
    from machine_limits import read_bandwidth
    from sgl.kernels.cpu.isa import isa
    from sgl.runtime import Engine
    from sgl.runtime.loader import default_model_path

    model = args.model or default_model_path()
    bandwidth_before = read_bandwidth(1.0, 5)  # GB/s, best of 5
    threads = args.threads or torch.get_num_threads()
    why = llama_importable(args.llama_python)
    if why is not None:
        print(f"SKIPPED the llama.cpp column: {args.llama_python} cannot import llama_cpp ({why}); install "
              "llama-cpp-python into its own environment and pass --llama-python", flush=True)
    theirs = None if why else LlamaSide(args.llama_python, model, threads)
    ours = Engine(model, quantization="auto", max_total_tokens=8192)
    torch.manual_seed(0)
    prompt512 = torch.randint(100, 40000, (512,)).tolist()
    rows: list[tuple[str, float, float | None]] = []

    def row(name: str, a: float, b: float | None) -> None:
        rows.append((name, a, b))
        print(rows[-1], flush=True)

    def ours_prefill() -> None:
        ours.flush_cache()
        ours.generate(input_ids=prompt512, sampling_params={"max_new_tokens": 1, "temperature": 0})

    a, b = paired_median_times(ours_prefill, theirs and (lambda: theirs.ask(op="prefill", ids=prompt512)),
                               args.repeats)
    row("prefill tokens/s (512 tokens)", 512 / a, b and 512 / b)

    n = args.decode_tokens
    short = torch.randint(100, 40000, (16,)).tolist()
    params = {"max_new_tokens": n, "temperature": 0, "ignore_eos": True}

    def ours_decode() -> None:
        ours.flush_cache()
        ours.generate(input_ids=short, sampling_params=params)

    a, b = paired_median_times(ours_decode, theirs and (lambda: theirs.ask(op="generate", prompts=[short], n=n)),
                               args.repeats)
    decode = (n / a, b and n / b)
    row(f"decode tokens/s, batch 1 ({n} tokens, 16-token prompt)", *decode)

    prefix = torch.randint(100, 40000, (256,)).tolist()
    shared = [prefix + torch.randint(100, 40000, (16,)).tolist() for _ in range(16)]
    sparams = {"max_new_tokens": 32, "temperature": 0, "ignore_eos": True}

    def ours_shared() -> None:
        ours.flush_cache()
        ours.generate(input_ids=shared, sampling_params=sparams)

    a, b = paired_median_times(ours_shared, theirs and (lambda: theirs.ask(op="generate", prompts=shared, n=32)),
                               args.repeats)
    row("16 requests, shared 256-token prefix, 32 tokens each: output tokens/s", 16 * 32 / a, b and 16 * 32 / b)

    ids = ours.tokenizer(TEXT)["input_ids"][:2000]
    ppl_auto = our_perplexity(ours, ids)
    ppl_llama = theirs.ask(op="perplexity", ids=ids)["ppl"] if theirs else None
    # every weight is read once a token: the quantized linears and head (the embedding tied to it
    # on both files here) and the float norms
    our_bytes = ours.weight_bytes["total"]
    ours.shutdown()
    with Engine(model, quantization="none", max_total_tokens=4096) as plain:
        ppl_none = our_perplexity(plain, ids)
    if theirs:
        theirs.close()

    # the limit is the fastest read the machine gave, before or after the workloads (its
    # neighbours' load moves it: a single median of 3 read 25 GB/s in one run, 45 in another)
    bw = max(bandwidth_before, read_bandwidth(1.0, 5)) * 1e9
    file_bytes = os.path.getsize(model)
    print(f"\nmodel: {model}, sgl level {isa().level.label}, threads {threads}, median of {args.repeats}, "
          f"load {os.getloadavg()[0]:.1f}")
    print(f"{'workload':<72}{'sgl':>10}{'llama.cpp':>11}{'ratio':>8}")
    for name, a, b in rows:
        print(f"{name:<72}{a:>10.1f}{(f'{b:.1f}' if b else '-'):>11}{(f'{a / b:.2f}x' if b else ''):>8}")
    print(f"perplexity of a fixed text ({len(ids)} tokens): none {ppl_none:.3f}, auto {ppl_auto:.3f}, "
          f"llama.cpp {ppl_llama if ppl_llama is None else round(ppl_llama, 3)}"
          + (f" (auto / llama.cpp - 1 = {100 * (ppl_auto / ppl_llama - 1):+.2f}%)" if ppl_llama else ""))
    print(f"read bandwidth {bw / 1e9:.1f} GB/s; decode reads ~{our_bytes / 1e6:.0f} MB/token (sgl: quantized "
          f"weights in the kernels' layout), ~{file_bytes / 1e6:.0f} MB (llama.cpp: the file)")
    print(f"decode at batch 1, fraction of the bandwidth limit: sgl {decode[0] * our_bytes / bw:.2f}"
          + (f", llama.cpp {decode[1] * file_bytes / bw:.2f}" if decode[1] else ""))


if __name__ == "__main__":
    main()
