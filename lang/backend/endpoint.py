"""RuntimeEndpoint: a backend over the native HTTP API of our server (or SGLang's).

``select`` is scored exactly as the in-process ``Runtime`` does (``sgl.backend.scoring``): the
choices are tokenized by the server (``/tokenize``), so the boundary token that a prompt and a
choice share is found on the same token ids the engine sees, and every choice is scored in one
batched ``/generate`` call from its prompt logprobs.

The chat template: ``chat_template_name`` if given; else the model's own template, which our
server publishes in ``/get_model_info`` (``chat_template``, ``bos_token``, ``eos_token``); else
SGLang's rule, a named template matched from the model path.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Sequence
from typing import Any

import requests
from sgl.backend.base import BaseBackend
from sgl.backend.scoring import select_by_logprobs
from sgl.chat_template import (
    ChatTemplate,
    from_tokenizer,
    get_chat_template,
    match_chat_template,
    with_image_token,
)
from sgl.choices import ChoicesDecision, ChoicesSamplingMethod
from sgl.global_config import global_config
from sgl.ir import SamplingParams
from sgl.media import image_data
from sgl.stream_meta import IncrementalMeta

_PREFILL_ONLY = {"max_new_tokens": 0}


class EndpointError(RuntimeError):
    """The server answered with an error that is not about the request's input."""


class RuntimeEndpoint(BaseBackend):
    """``sgl.RuntimeEndpoint(base_url, api_key=None, chat_template_name=None)``."""

    def __init__(self, base_url: str, api_key: str | None = None, chat_template_name: str | None = None,
                 timeout: float = 600.0, verify: Any = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.api_key, self.timeout, self.verify = api_key, timeout, verify
        self._local = threading.local()  # one requests.Session per thread
        self.model_info: dict[str, Any] = self._request("GET", "/get_model_info")
        if chat_template_name is not None:
            self.chat_template = get_chat_template(chat_template_name)
        else:
            self.chat_template = self._model_template() or match_chat_template(str(self.model_info["model_path"]))
            # the model's own placeholder text, where the server says (ours does)
            self.chat_template = with_image_token(self.chat_template, self.model_info.get("image_token"))
        self.is_multimodal = bool(self.model_info.get("supports_image") or self.model_info.get("supports_video"))

    # ---- HTTP ----------------------------------------------------------------------------

    def _session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = requests.Session()
            if self.api_key is not None:
                session.headers["Authorization"] = f"Bearer {self.api_key}"
        return session

    def _send(self, method: str, path: str, body: dict | None = None, stream: bool = False) -> requests.Response:
        try:
            resp = self._session().request(method, self.base_url + path, json=body, stream=stream,
                                           timeout=self.timeout, verify=self.verify)
        except requests.ConnectionError as e:
            raise ConnectionError(f"cannot reach the sgl server at {self.base_url}: is it running? ({e})") from None
        if resp.status_code >= 400:
            message = _error_message(resp)
            if resp.status_code == 400:  # the request's input: the same error the engine raises
                raise ValueError(message)
            if resp.status_code == 401:
                raise PermissionError(f"{message} (pass api_key= to RuntimeEndpoint)")
            raise EndpointError(f"{method} {path} answered {resp.status_code}: {message}")
        return resp

    def _request(self, method: str, path: str, body: dict | None = None) -> Any:
        return self._send(method, path, body).json()

    def _generate(self, body: dict) -> Any:
        out = self._request("POST", "/generate", body)
        for r in out if isinstance(out, list) else [out]:
            reason = r["meta_info"].get("finish_reason") or {}
            if reason.get("type") == "abort":
                raise EndpointError(f"the server aborted the request: {reason.get('message')}")
        return out

    # ---- BaseBackend ---------------------------------------------------------------------

    def get_chat_template(self) -> ChatTemplate:
        return self.chat_template

    def _body(self, state: Any, params: SamplingParams) -> dict[str, Any]:
        params = params.resolve_dtype()
        sampling = params.to_engine()
        sampling["skip_special_tokens"] = global_config.skip_special_tokens_in_output
        sampling["spaces_between_special_tokens"] = global_config.spaces_between_special_tokens_in_out
        body: dict[str, Any] = {"text": state.text_, "sampling_params": sampling, **params.logprob_kwargs()}
        return {**body, **image_data(state)}

    def generate(self, state: Any, sampling_params: SamplingParams) -> tuple[Any, Any]:
        out = self._generate(self._body(state, sampling_params))
        if isinstance(out, list):  # n > 1
            return [o["text"] for o in out], [o["meta_info"] for o in out]
        return out["text"], out["meta_info"]

    def generate_stream(self, state: Any, sampling_params: SamplingParams) -> Iterator[tuple[str, dict]]:
        body = {**self._body(state, sampling_params), "stream": True}
        incremental = IncrementalMeta()  # SGLang's servers may send all rows so far
        with self._send("POST", "/generate", body, stream=True) as resp:
            sent = 0
            for line in resp.iter_lines():
                if not line.startswith(b"data:"):
                    continue
                payload = line[5:].strip()
                if payload == b"[DONE]":
                    break
                chunk = json.loads(payload)
                if "error" in chunk:
                    raise EndpointError(chunk["error"]["message"])
                text = chunk["text"]  # cumulative
                yield text[sent:], incremental.chunk(chunk["meta_info"])
                sent = len(text)

    def select(
        self, state: Any, choices: Sequence[str], temperature: float, choices_method: ChoicesSamplingMethod
    ) -> ChoicesDecision:
        # NOTE: as Runtime.select, with the tokenizer (through /tokenize) and the engine behind HTTP.
        texts = [state.text_] + [state.text_ + c for c in choices]
        return select_by_logprobs(self._generate, _ServerTokens(self, texts), state.text_, choices, choices_method,
                                  image_data(state).get("image_data"))

    def commit_lazy_operations(self, state: Any) -> None:
        self._generate({"text": state.text_, "sampling_params": dict(_PREFILL_ONLY), **image_data(state)})

    def cache_prefix(self, prefix_str: str) -> None:
        self._generate({"text": prefix_str, "sampling_params": dict(_PREFILL_ONLY)})

    def flush_cache(self) -> bool:
        """True when the server emptied its cache; False when it refused (requests running)."""
        try:
            self._request("POST", "/flush_cache")
        except ValueError:
            return False
        return True

    def get_server_info(self) -> dict:
        return self._request("GET", "/get_server_info")

    def get_model_name(self) -> str:
        """The served model's path (SGLang's ``RuntimeEndpoint.get_model_name``)."""
        return str(self.model_info["model_path"])

    def get_model_info(self) -> dict[str, Any]:
        return self.model_info

    def shutdown(self) -> None:
        session = getattr(self._local, "session", None)
        if session is not None:
            session.close()

    # ---- chat template -------------------------------------------------------------------

    def _model_template(self) -> ChatTemplate | None:
        source = self.model_info.get("chat_template")
        if not isinstance(source, str) or not source:
            return None
        try:
            return from_tokenizer(_JinjaTemplate(source, self.model_info), name="model")
        except Exception:  # a template we cannot split into role prefixes: SGLang's rule instead
            return None


class _ServerTokens:
    """The ``encode`` that ``choice_spans`` needs, answered by one /tokenize call for all texts."""

    def __init__(self, endpoint: RuntimeEndpoint, texts: list[str]) -> None:
        try:
            ids = endpoint._request("POST", "/tokenize", {"prompt": texts})["tokens"]
        except EndpointError as e:
            raise EndpointError(f"select needs the server's /tokenize route ({e})") from None
        self._ids = dict(zip(texts, ids))

    def encode(self, text: str) -> list[int]:
        return list(self._ids[text])


class _JinjaTemplate:
    """Enough of a tokenizer for ``from_tokenizer``: renders the server's chat template the way
    transformers does (sandboxed Jinja, trim_blocks, lstrip_blocks)."""

    def __init__(self, source: str, info: dict[str, Any]) -> None:
        from jinja2.ext import loopcontrols
        from jinja2.sandbox import ImmutableSandboxedEnvironment

        def raise_exception(message: str) -> None:
            raise ValueError(message)

        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])
        env.globals["raise_exception"] = raise_exception
        env.filters["tojson"] = lambda x, indent=None, **_: json.dumps(x, indent=indent, ensure_ascii=False)
        self.chat_template = source
        self._template = env.from_string(source)
        self.bos_token, self.eos_token = info.get("bos_token") or "", info.get("eos_token") or ""
        self.add_bos_token = bool(info.get("add_bos_token", False))

    def apply_chat_template(self, messages: list[dict], tokenize: bool = False,
                            add_generation_prompt: bool = False) -> str:
        return self._template.render(messages=messages, add_generation_prompt=add_generation_prompt,
                                     bos_token=self.bos_token, eos_token=self.eos_token)


def _error_message(resp: requests.Response) -> str:
    try:
        body = resp.json()
        return str(body["error"]["message"]) if isinstance(body, dict) and "error" in body else str(body)
    except ValueError:
        return resp.text[:500]
