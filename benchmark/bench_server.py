"""HTTP overhead: N concurrent clients against the server vs the same load on the in-process engine.

Each client thread sends its share of the same prompts (greedy, ignore_eos, a fixed number of
new tokens, so every mode decodes exactly the same tokens). The cache is flushed before each
mode. Modes: the in-process `Engine.generate` (the baseline), native `/generate`, native
`/generate` streaming, and OpenAI `/v1/completions` through the `openai` package. Prints wall
time, requests/s, output tokens/s, and the ratio of the engine's wall time to each mode's
(1.00 = no HTTP overhead). The engine and the server run one after the other, not at once.

    .venv/bin/python benchmark/bench_server.py [--clients 32] [--requests 128] [--max-new-tokens 32]
                                               [--model-path PATH] [--dtype auto]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import requests

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOPICS = ["rivers", "mountains", "cities", "music", "trains", "gardens", "oceans", "forests", "deserts",
          "islands", "bridges", "castles", "markets", "libraries", "museums", "harbours"]


def make_prompts(n: int) -> list[str]:
    return [f"Request {i}: write a short paragraph about {TOPICS[i % len(TOPICS)]} number {i // len(TOPICS)}."
            for i in range(n)]


def run_clients(clients: int, prompts: list[str], one: Callable[[str], int]) -> tuple[float, int]:
    """Wall time for `clients` threads to send all prompts (each thread takes the next one)."""
    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=clients) as pool:
        tokens = sum(pool.map(one, prompts))
    return time.perf_counter() - start, tokens


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(engine_args: list[str]) -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "sgl.launch_server", "--port", str(port), *engine_args],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"the server exited with {proc.returncode}")
        try:
            if requests.get(url + "/health", timeout=5).status_code == 200:
                return proc, url
        except requests.ConnectionError:
            time.sleep(0.5)
    proc.kill()
    sys.exit("the server did not start in 300 s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--requests", type=int, default=128)
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument("--model-path", default=None)
    ap.add_argument("--dtype", default="auto")
    args = ap.parse_args()
    prompts = make_prompts(args.requests)
    params = {"max_new_tokens": args.max_new_tokens, "temperature": 0, "ignore_eos": True}
    rows: list[tuple[str, float, int]] = []

    from sgl.runtime import Engine

    engine = Engine(model_path=args.model_path, dtype=args.dtype)
    engine.generate(prompts[:4], params)  # warm-up
    engine.flush_cache()
    rows.append(("in-process Engine.generate",
                 *run_clients(args.clients, prompts, lambda p: engine.generate(p, params)["meta_info"]["completion_tokens"])))
    engine.shutdown()

    engine_args = ["--dtype", args.dtype] + (["--model-path", args.model_path] if args.model_path else [])
    proc, url = start_server(engine_args)
    try:
        session_per_thread: dict[int, requests.Session] = {}

        def session() -> requests.Session:
            return session_per_thread.setdefault(threading.get_ident(), requests.Session())

        def native(p: str) -> int:
            r = session().post(url + "/generate", json={"text": p, "sampling_params": params}, timeout=600)
            return r.json()["meta_info"]["completion_tokens"]

        def native_stream(p: str) -> int:
            last = None
            with session().post(url + "/generate", json={"text": p, "sampling_params": params, "stream": True},
                                stream=True, timeout=600) as r:
                for line in r.iter_lines():
                    if line.startswith(b"data: {"):
                        last = json.loads(line[6:])
            return last["meta_info"]["completion_tokens"] if last else 0

        import openai

        client = openai.OpenAI(base_url=url + "/v1", api_key="EMPTY", max_retries=0, timeout=600)

        def openai_completion(p: str) -> int:
            resp = client.completions.create(model="m", prompt=p, max_tokens=args.max_new_tokens, temperature=0,
                                             extra_body={"ignore_eos": True})
            return resp.usage.completion_tokens

        native(prompts[0])  # warm-up
        for name, fn in (("HTTP /generate", native), ("HTTP /generate stream", native_stream),
                         ("HTTP /v1/completions (openai)", openai_completion)):
            requests.post(url + "/flush_cache", timeout=60)
            rows.append((name, *run_clients(args.clients, prompts, fn)))
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)

    base = rows[0][1]
    print(f"\n{args.clients} clients, {args.requests} requests, {args.max_new_tokens} new tokens each (greedy)")
    print(f"{'mode':34s} {'wall s':>8s} {'req/s':>8s} {'out tok/s':>10s} {'engine/mode':>12s}")
    for name, wall, tokens in rows:
        print(f"{name:34s} {wall:8.2f} {args.requests / wall:8.2f} {tokens / wall:10.1f} {base / wall:12.2f}")


if __name__ == "__main__":
    main()
