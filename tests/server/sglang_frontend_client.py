"""Run in a subprocess by test_server_stream_logprobs.py: SGLang's own frontend
(`sglang.lang.backend.runtime_endpoint.RuntimeEndpoint`, sglang==0.5.23 installed with
--no-deps) against our server. Prints one JSON object: {"skip": reason} when SGLang's frontend
cannot be imported, else the non-streamed and streamed (text, meta_info) of one greedy gen.

`sglang/__init__.py` imports SGLang's server runtime (`sglang.srt`, with its heavy dependencies),
which the frontend does not need: the package is registered without running it, so only
`sglang.lang`'s own imports (aiohttp, msgspec, pybase64, IPython, ...) must be installed.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import types


def import_frontend():
    spec = importlib.util.find_spec("sglang")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("sglang is not installed (pip install --no-deps sglang==0.5.23)")
    package = types.ModuleType("sglang")
    package.__path__ = list(spec.submodule_search_locations)
    sys.modules["sglang"] = package
    from sglang.lang.backend.runtime_endpoint import RuntimeEndpoint
    from sglang.lang.ir import SglSamplingParams

    return RuntimeEndpoint, SglSamplingParams


def main(url: str, prompt: str) -> None:
    try:
        RuntimeEndpoint, SglSamplingParams = import_frontend()
    except ImportError as e:
        print(json.dumps({"skip": f"SGLang's frontend cannot be imported: {e}"}))
        return
    backend = RuntimeEndpoint(url)
    params = SglSamplingParams(max_new_tokens=8, temperature=0, return_logprob=True, top_logprobs_num=2,
                               return_text_in_logprobs=True)
    state = types.SimpleNamespace(text_=prompt, images_=[])  # what its generate calls read
    text, meta = backend.generate(state, params)
    backend.flush_cache()
    chunks = list(backend.generate_stream(state, params))
    print(json.dumps({"model_name": backend.get_model_name(), "text": text, "meta": meta,
                      "chunks": [[piece, m] for piece, m in chunks]}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
