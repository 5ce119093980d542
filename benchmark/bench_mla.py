"""MLA decode on the CPU: ours vs transformers on a random DeepSeek-V2-Lite-shaped model.

The attention is at V2-Lite's real width (hidden 2048, 16 heads, kv_lora_rank 512, rope 64,
nope 128, v 128, q from one projection); --layers dense layers (narrow MLPs, so attention over
the context is what the step costs). A --context-token prompt per request, then --decode-tokens
greedy tokens; decode tokens/s = (tokens after the first) / (time of the whole run minus the
time of a run that stops after the first token), median of --repeats, the two sides in turn.
Also prints the KV bytes per token each side keeps: our latent pool vs transformers' per-head
keys and values.

    .venv/bin/python benchmark/bench_mla.py [--repeats 3] [--batch 1,8] [--dtype bfloat16]
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile

import torch
from bench_engine import paired_median_times

HIDDEN, HEADS, RANK, ROPE, NOPE, V = 2048, 16, 512, 64, 128, 128


def save_model(folder: str, layers: int, dtype: torch.dtype) -> None:
    from sgl.runtime.loader import default_model_path
    from sgl.runtime.loader.gguf_file import converted_folder
    from transformers import AutoModelForCausalLM, DeepseekV2Config

    cfg = DeepseekV2Config(vocab_size=49152, hidden_size=HIDDEN, intermediate_size=1024, num_hidden_layers=layers,
                           num_attention_heads=HEADS, num_key_value_heads=HEADS, kv_lora_rank=RANK, q_lora_rank=None,
                           qk_rope_head_dim=ROPE, qk_nope_head_dim=NOPE, v_head_dim=V, first_k_dense_replace=layers,
                           n_routed_experts=4, num_experts_per_tok=1, moe_intermediate_size=64,
                           max_position_embeddings=4096, tie_word_embeddings=True, bos_token_id=1, eos_token_id=2,
                           architectures=["DeepseekV2ForCausalLM"])
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(cfg, dtype=dtype).save_pretrained(folder)
    source = converted_folder(default_model_path())
    for name in os.listdir(source):
        if name.startswith(("tokenizer", "special_tokens")):
            shutil.copy(os.path.join(source, name), folder)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--context-tokens", type=int, default=512)
    ap.add_argument("--decode-tokens", type=int, default=32)
    ap.add_argument("--batch", default="1,8")
    ap.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float32"])
    args = ap.parse_args()

    from sgl.runtime import Engine
    from transformers import AutoModelForCausalLM

    dtype = getattr(torch, args.dtype)
    n, ctx = args.decode_tokens, args.context_tokens
    with tempfile.TemporaryDirectory() as folder:
        save_model(folder, args.layers, dtype)
        hf = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype).eval()
        with Engine(folder, dtype=args.dtype, max_total_tokens=(ctx + n + 8) * 16) as engine:
            info = engine.get_server_info()
            theirs_kv = args.layers * HEADS * (NOPE + ROPE + V) * dtype.itemsize
            print(f"KV bytes per token ({args.layers} layers, {args.dtype}): ours {info['kv_bytes_per_token']} "
                  f"({info['kv_pool']}), transformers {theirs_kv} (per-head keys and values)", flush=True)
            for b in (int(x) for x in args.batch.split(",")):
                torch.manual_seed(b)
                prompts = torch.randint(100, 40000, (b, ctx))

                def ours(tokens: int, prompts: torch.Tensor = prompts) -> None:
                    engine.flush_cache()
                    engine.generate(input_ids=prompts.tolist(), sampling_params={
                        "max_new_tokens": tokens, "temperature": 0, "ignore_eos": True})

                def theirs(tokens: int, prompts: torch.Tensor = prompts) -> None:
                    with torch.inference_mode():
                        hf.generate(prompts, attention_mask=torch.ones_like(prompts), max_new_tokens=tokens,
                                    min_new_tokens=tokens, do_sample=False)

                full = paired_median_times(lambda: ours(n), lambda: theirs(n), args.repeats)
                first = paired_median_times(lambda: ours(1), lambda: theirs(1), args.repeats)
                rates = [b * (n - 1) / max(f - s, 1e-9) for f, s in zip(full, first)]
                print(f"decode tokens/s, batch {b}, {ctx}-token context: ours {rates[0]:.1f}, "
                      f"transformers {rates[1]:.1f}, ratio {rates[0] / rates[1]:.2f}x", flush=True)


if __name__ == "__main__":
    main()
