"""The `sgl` command. Engine flags are generated from `EngineConfig`'s fields.

    sgl chat "What is the capital of France?"      # one chat turn on the default model
    sgl generate "The capital of France is" --max-new-tokens 16
    sgl serve --port 30000                          # the HTTP server (see runtime/server)
"""

from __future__ import annotations

import argparse
import sys
import time

from .engine_args import add_engine_args, engine_kwargs


def _generate(args: argparse.Namespace, chat: bool) -> None:
    from .engine import Engine

    start = time.perf_counter()
    with Engine(**engine_kwargs(args)) as engine:
        loaded = time.perf_counter()
        prompt = args.prompt
        if chat:
            prompt = engine.tokenizer.apply_chat_template([{"role": "user", "content": prompt}],
                                                          tokenize=False, add_generation_prompt=True)
        params = {"max_new_tokens": args.max_new_tokens, "temperature": args.temperature}
        text = ""
        for chunk in engine.generate(prompt, params, stream=True):
            sys.stdout.write(chunk["text"][len(text):])
            sys.stdout.flush()
            text = chunk["text"]
        meta = chunk["meta_info"]
        print(f"\n\n[{engine.model_config.architecture}, {engine.dtype}: loaded in {loaded - start:.1f}s, "
              f"{meta['completion_tokens']} tokens in {meta['e2e_latency']:.2f}s]", file=sys.stderr)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["serve"]:  # the server parses its own flags (host, port, api key, engine args)
        from .server.launch import main as serve_main

        serve_main(argv[1:])
        return
    parser = argparse.ArgumentParser(prog="sgl", description="sgl: structured generation with an embedded engine")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("chat", "generate"):
        p = sub.add_parser(name, help=f"{name} on a model (default: SmolLM2-135M-Instruct)")
        p.add_argument("prompt")
        p.add_argument("--max-new-tokens", type=int, default=128)
        p.add_argument("--temperature", type=float, default=0.0)
        add_engine_args(p)
    sub.add_parser("serve", help="start the HTTP server (see `sgl serve --help`)")
    args = parser.parse_args(argv)
    _generate(args, chat=args.command == "chat")


if __name__ == "__main__":
    main()
