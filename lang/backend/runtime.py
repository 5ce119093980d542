"""Runtime: the in-process engine (``sgl.runtime.Engine``) as a backend. No server, no HTTP.

``select`` scores every choice in one batched engine call, from the engine's input logprobs.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from sgl.backend.base import BaseBackend
from sgl.backend.engine_endpoint import EngineEndpoint
from sgl.backend.scoring import select_by_logprobs
from sgl.chat_template import ChatTemplate, from_tokenizer, get_chat_template, with_image_token
from sgl.choices import ChoicesDecision, ChoicesSamplingMethod
from sgl.global_config import global_config
from sgl.ir import SamplingParams
from sgl.media import image_data

_PREFILL_ONLY = {"max_new_tokens": 0}


class Runtime(BaseBackend):
    """``sgl.Runtime(model_path=None, **engine_args)``; the default model when no path."""

    def __init__(self, model_path: str | None = None, chat_template: ChatTemplate | str | None = None, **engine_args: Any) -> None:
        from sgl.runtime import Engine

        self._setup(Engine(model_path=model_path, **engine_args), chat_template)

    @classmethod
    def from_engine(cls, engine: Any, chat_template: ChatTemplate | str | None = None) -> Runtime:
        """Wrap an engine that already exists (anything with the Engine's methods)."""
        self = cls.__new__(cls)
        self._setup(engine, chat_template)
        return self

    def _setup(self, engine: Any, chat_template: ChatTemplate | str | None) -> None:
        self.engine = engine
        if isinstance(chat_template, str):
            chat_template = get_chat_template(chat_template)
        self.chat_template = chat_template or from_tokenizer(engine.tokenizer, name="model")
        self.is_multimodal = bool(getattr(engine, "is_multimodal", False))
        if self.is_multimodal and chat_template is None:  # the model's own placeholder text
            self.chat_template = with_image_token(self.chat_template, engine.modalities().get("image_token"))
        self.endpoint = EngineEndpoint(self)  # SGLang's `Runtime.endpoint`, answered in-process

    # ---- BaseBackend -----------------------------------------------------------------------

    def get_chat_template(self) -> ChatTemplate:
        return self.chat_template

    def get_tokenizer(self) -> Any:
        return self.engine.tokenizer

    def _request(self, state: Any, params: SamplingParams) -> tuple[dict, dict]:
        params = params.resolve_dtype()
        sampling = params.to_engine()
        sampling["skip_special_tokens"] = global_config.skip_special_tokens_in_output
        return sampling, params.logprob_kwargs()

    def generate(self, state: Any, sampling_params: SamplingParams) -> tuple[Any, Any]:
        sampling, extra = self._request(state, sampling_params)
        out = self.engine.generate(prompt=state.text_, sampling_params=sampling, **extra, **image_data(state))
        if isinstance(out, list):  # n > 1
            return [o["text"] for o in out], [o["meta_info"] for o in out]
        return out["text"], out["meta_info"]

    def generate_stream(self, state: Any, sampling_params: SamplingParams) -> Iterator[tuple[str, dict]]:
        """(new text, meta_info) per engine update; meta_info as the server streams it: the
        logprob rows of the tokens new in this chunk (sgl.stream_meta)."""
        from sgl.runtime.results import IncrementalStream

        sampling, extra = self._request(state, sampling_params)
        sent = 0
        incremental = IncrementalStream()
        for result in self.engine.generate(prompt=state.text_, sampling_params=sampling, stream=True, **extra,
                                           **image_data(state)):
            chunk = incremental.chunk(result)
            text = chunk["text"]  # cumulative
            yield text[sent:], chunk["meta_info"]
            sent = len(text)

    def select(
        self, state: Any, choices: Sequence[str], temperature: float, choices_method: ChoicesSamplingMethod
    ) -> ChoicesDecision:
        # NOTE: one batched engine call for all choices; they share the prompt's cached prefix.
        return select_by_logprobs(lambda body: self.engine.generate(**body), self.engine.tokenizer, state.text_, choices,
                                  choices_method, image_data(state).get("image_data"))

    def commit_lazy_operations(self, state: Any) -> None:
        self.engine.generate(prompt=state.text_, sampling_params=dict(_PREFILL_ONLY), **image_data(state))

    def cache_prefix(self, prefix_str: str) -> None:
        self.engine.generate(prompt=prefix_str, sampling_params=dict(_PREFILL_ONLY))

    def flush_cache(self) -> Any:
        return self.engine.flush_cache()

    def get_server_info(self) -> dict:
        return self.engine.get_server_info()

    def shutdown(self) -> None:
        self.engine.shutdown()
