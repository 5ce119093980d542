"""OpenAI: a backend over any OpenAI-compatible server, through the ``openai`` package.

Chat models receive the program's messages and may only generate at the start of an assistant
turn; completion models receive the whole text. ``select`` is not available (OpenAI's API gives
no prompt logprobs to score choices with): use ``sgl.RuntimeEndpoint`` for it. Against our
server, ``regex``, ``json_schema`` (and ``gen(dtype=...)``, which becomes a regex) and the
sampler's extra knobs pass through as ``extra_body``. Against OpenAI itself (api.openai.com),
``json_schema`` becomes ``response_format`` (chat models), and ``regex`` / ``ebnf``, which its API
has no field for, raise before any request, naming the argument.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from typing import Any

from sgl.backend.base import BaseBackend
from sgl.chat_template import ChatTemplate, get_chat_template, match_chat_template
from sgl.choices import ChoicesDecision, ChoicesSamplingMethod
from sgl.ir import SamplingParams

# completion-only models among OpenAI's (SGLang's list); every other name is a chat model
INSTRUCT_MODEL_NAMES = ("gpt-3.5-turbo-instruct", "davinci-002", "babbage-002")

# extra_body fields: sent only when they differ from the "off" value, so that OpenAI proper,
# which rejects unknown fields, still accepts programs that leave them at their defaults
_EXTRA_OFF = {"top_k": -1, "min_p": 0.0, "min_new_tokens": 0, "ignore_eos": False, "stop_token_ids": [],
              "stop_regex": [], "regex": None, "json_schema": None, "ebnf": None,
              "token_healing": False}
_EXTRA_NAMES = {"min_new_tokens": "min_tokens"}


class OpenAI(BaseBackend):
    """``sgl.OpenAI(model_name, base_url=None, api_key=None, is_chat_model=None)``."""

    def __init__(self, model_name: str, base_url: str | None = None, api_key: str | None = None,
                 is_chat_model: bool | None = None, chat_template: ChatTemplate | str | None = None,
                 **client_kwargs: Any) -> None:
        import openai

        if api_key is None:
            # a local server needs no key, but the client insists on one
            api_key = os.environ.get("OPENAI_API_KEY") or ("EMPTY" if base_url else None)
        self.client = openai.OpenAI(base_url=base_url, api_key=api_key, **client_kwargs)
        self.model_name = model_name
        self.is_chat_model = model_name not in INSTRUCT_MODEL_NAMES if is_chat_model is None else is_chat_model
        if isinstance(chat_template, str):
            chat_template = get_chat_template(chat_template)
        self.chat_template = chat_template or match_chat_template(model_name)
        self.is_openai = "api.openai.com" in str(self.client.base_url)  # OpenAI itself, not a compatible server

    def get_chat_template(self) -> ChatTemplate:
        return self.chat_template

    # ---- requests --------------------------------------------------------------------------

    def _kwargs(self, state: Any, params: SamplingParams) -> dict[str, Any]:
        sp = params.resolve_dtype().to_engine()
        kwargs: dict[str, Any] = {"model": self.model_name}
        for ours, theirs in (("max_new_tokens", "max_tokens"), ("temperature", "temperature"), ("top_p", "top_p"),
                             ("frequency_penalty", "frequency_penalty"), ("presence_penalty", "presence_penalty"),
                             ("n", "n")):
            if ours in sp:
                kwargs[theirs] = sp[ours]
        if sp.get("stop"):
            kwargs["stop"] = sp["stop"]
        if self.is_openai:
            self._openai_constraint(params, sp, kwargs)
        extra = {_EXTRA_NAMES.get(k, k): v for k, v in sp.items() if k in _EXTRA_OFF and v != _EXTRA_OFF[k]}
        if extra:
            kwargs["extra_body"] = extra
        if params.return_logprob:
            if self.is_chat_model:
                kwargs["logprobs"] = True
                if params.top_logprobs_num:
                    kwargs["top_logprobs"] = params.top_logprobs_num
            else:
                kwargs["logprobs"] = params.top_logprobs_num or 0
        if self.is_chat_model:
            assistant_prefix = self.chat_template.get_prefix_and_suffix("assistant", state.messages_)[0]
            if state.cur_role != "assistant" or not state.text_.endswith(assistant_prefix):
                raise ValueError(
                    f"{self.model_name} is a chat model: a gen must come right at the start of an assistant "
                    "turn (sgl.assistant(sgl.gen(...))); pass is_chat_model=False for a completion model"
                )
            kwargs["messages"] = list(state.messages_)
        else:
            kwargs["prompt"] = state.text_
        return kwargs

    def _openai_constraint(self, params: SamplingParams, sp: dict[str, Any], kwargs: dict[str, Any]) -> None:
        """OpenAI's own API: a JSON schema as ``response_format``; regex and grammars have no field."""
        for field in ("ebnf", "regex"):
            if sp.get(field) is not None:
                arg = f"dtype={params.dtype!r}" if field == "regex" and params.dtype is not None else f"{field}=..."
                raise ValueError(f"gen({arg}): OpenAI's API has no {field} constraint; run the program on a server "
                                 "that has (sgl.OpenAI(..., base_url=our server), sgl.RuntimeEndpoint, sgl.Runtime)")
        schema = sp.pop("json_schema", None)
        if schema is not None:
            if not self.is_chat_model:
                raise ValueError(f"gen(json_schema=...): OpenAI's completion model {self.model_name} takes no "
                                 "JSON schema; use a chat model (response_format) or our server")
            kwargs["response_format"] = {"type": "json_schema",
                                         "json_schema": {"name": "output", "schema": json.loads(schema)}}

    def _create(self, kwargs: dict[str, Any]) -> Any:
        if self.is_chat_model:
            return self.client.chat.completions.create(**kwargs)
        return self.client.completions.create(**kwargs)

    def generate(self, state: Any, sampling_params: SamplingParams) -> tuple[Any, Any]:
        comp = self._create(self._kwargs(state, sampling_params))
        texts = [(c.message.content or "") if self.is_chat_model else c.text for c in comp.choices]
        metas = [_meta(comp, c) for c in comp.choices]
        if len(texts) > 1:
            return texts, metas
        return texts[0], metas[0]

    def generate_stream(self, state: Any, sampling_params: SamplingParams) -> Iterator[tuple[str, dict]]:
        kwargs = self._kwargs(state, sampling_params)
        if kwargs.get("n", 1) != 1:
            raise ValueError("streaming takes n=1")
        kwargs["stream"] = True
        meta: dict[str, Any] = {}
        for chunk in self._create(kwargs):
            if not chunk.choices:
                continue
            choice = chunk.choices[0]
            piece = (choice.delta.content or "") if self.is_chat_model else (choice.text or "")
            meta = {"id": chunk.id, "finish_reason": choice.finish_reason}
            if piece or choice.finish_reason:
                yield piece, meta

    def select(self, state: Any, choices: Sequence[str], temperature: float,
               choices_method: ChoicesSamplingMethod) -> ChoicesDecision:
        raise NotImplementedError(
            "sgl.OpenAI cannot score select choices (the OpenAI API returns no prompt logprobs); "
            "run the program on sgl.RuntimeEndpoint (the native API) or sgl.Runtime"
        )


def _meta(comp: Any, choice: Any) -> dict[str, Any]:
    meta: dict[str, Any] = {"id": comp.id, "finish_reason": choice.finish_reason}
    if comp.usage is not None:
        meta["prompt_tokens"] = comp.usage.prompt_tokens
        meta["completion_tokens"] = comp.usage.completion_tokens
    if getattr(choice, "logprobs", None) is not None:
        meta["logprobs"] = choice.logprobs.model_dump() if hasattr(choice.logprobs, "model_dump") else choice.logprobs
    return meta
