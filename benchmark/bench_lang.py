"""Few-shot QA batch: sgl `run_batch` vs the same prompts one by one through transformers.

Both sides get the same prompts (a shared 5-shot header + one question), greedy decoding,
the same max_new_tokens and the stop string "\\n". Model loading is not timed. sgl runs the
programs concurrently on the in-process engine (radix cache: the header is prefilled once;
continuous batching: decodes run together); transformers runs `generate` per prompt.

Run: python benchmark/bench_lang.py [--num 32] [--max-new-tokens 16] [--dtype bfloat16|float32]
"""

from __future__ import annotations

import argparse
import os
import time

import sgl
import torch

SHOTS = [("France", "Paris"), ("England", "London"), ("Australia", "Canberra"),
         ("Switzerland", "Bern"), ("South Korea", "Seoul")]  # fmt: skip
HEADER = "Answer with the capital city.\n\n" + "".join(
    f"Question: What is the capital of {c}?\nAnswer: {a}\n\n" for c, a in SHOTS
)
COUNTRIES = """Japan Germany Italy Spain Canada Egypt Kenya Peru Chile Norway Sweden Finland
Poland Greece Turkey India China Brazil Mexico Cuba Ireland Portugal Austria Hungary Russia
Iran Iraq Nepal Vietnam Thailand Argentina Belgium Denmark Ghana Iceland Japan""".split()


def question(country: str) -> str:
    return "Question: What is the capital of " + country + "?\nAnswer:"


@sgl.function
def few_shot_qa(s, country):
    s += HEADER
    s += question(country)
    s += sgl.gen("answer", stop="\n")


def run_sgl(countries: list[str], max_new_tokens: int, dtype: str) -> tuple[float, list[str], dict]:
    rt = sgl.Runtime(dtype=dtype)
    few_shot_qa.run(country="Chad", max_new_tokens=2, temperature=0, backend=rt).sync()  # warm-up
    rt.flush_cache()
    t0 = time.perf_counter()
    states = few_shot_qa.run_batch(
        [{"country": c} for c in countries], max_new_tokens=max_new_tokens, temperature=0, backend=rt
    )
    answers = [st["answer"] for st in states]
    elapsed = time.perf_counter() - t0
    info = {"dtype": str(rt.engine.dtype), "errors": sum(st.error() is not None for st in states)}
    rt.shutdown()
    return elapsed, answers, info


def run_transformers(countries: list[str], max_new_tokens: int, dtype: torch.dtype) -> tuple[float, list[str]]:
    from sgl.runtime.loader import default_model_path
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = default_model_path()
    folder, name = os.path.dirname(path), os.path.basename(path)
    tok = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    try:
        model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=dtype)
    except ValueError as e:  # transformers' GGUF path needs `accelerate`, not a project dependency
        if "accelerate" not in str(e):
            raise
        model = _transformers_llama_from_gguf(path, dtype)
    model = model.eval()

    def one(prompt: str) -> str:
        ids = tok(prompt, return_tensors="pt")
        out = model.generate(
            **ids, max_new_tokens=max_new_tokens, do_sample=False, stop_strings=["\n"], tokenizer=tok,
            pad_token_id=tok.eos_token_id,
        )  # fmt: skip
        return tok.decode(out[0, ids["input_ids"].shape[1] :], skip_special_tokens=True).split("\n")[0]

    with torch.inference_mode():
        one(HEADER + question("Chad"))  # warm-up
        t0 = time.perf_counter()
        answers = [one(HEADER + question(c)) for c in countries]
        return time.perf_counter() - t0, answers


def _transformers_llama_from_gguf(path: str, dtype: torch.dtype):
    """transformers' own model class with the GGUF's dequantized weights (as bench_engine.py)."""
    from sgl.runtime.loader.gguf_file import converted_folder, iterate_gguf_weights
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(converted_folder(path))
    model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    state = dict(iterate_gguf_weights(path, config.num_attention_heads, config.num_key_value_heads))
    model.load_state_dict(state, strict=False)
    model.tie_weights()
    return model


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--num", type=int, default=32, help="programs in the batch")
    p.add_argument("--max-new-tokens", type=int, default=16)
    p.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float32"], help="both sides' dtype")
    args = p.parse_args()
    countries = (COUNTRIES * (args.num // len(COUNTRIES) + 1))[: args.num]

    t_sgl, a_sgl, info = run_sgl(countries, args.max_new_tokens, args.dtype)
    t_hf, a_hf = run_transformers(countries, args.max_new_tokens, getattr(torch, args.dtype))
    same = sum(x.strip() == y.strip() for x, y in zip(a_sgl, a_hf))

    print(f"few-shot QA, {args.num} programs, 5-shot header, max_new_tokens={args.max_new_tokens}, greedy")
    print(f"{'system':<34} {'seconds':>8} {'programs/s':>11}")
    print(f"{'sgl run_batch (engine ' + info['dtype'] + ')':<34} {t_sgl:>8.2f} {args.num / t_sgl:>11.2f}")
    print(f"{'transformers generate, one by one (' + args.dtype + ')':<34} {t_hf:>8.2f} {args.num / t_hf:>11.2f}")
    print(f"speedup: {t_hf / t_sgl:.1f}x   (same answers: {same}/{args.num}, sgl errors: {info['errors']})")
    for c, x, y in list(zip(countries, a_sgl, a_hf))[:5]:
        print(f"  {c:>10}: sgl {x.strip()!r:<14} transformers {y.strip()!r}")


if __name__ == "__main__":
    main()
