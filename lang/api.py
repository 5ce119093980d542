"""Public constructors. Each validates its arguments at once and raises naming the argument."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Sequence
from typing import Any

from sgl.choices import ChoicesSamplingMethod, token_length_normalized
from sgl.function import SglFunction
from sgl.global_config import global_config
from sgl.ir import (
    DTYPE_REGEX,
    Expr,
    ExprList,
    Gen,
    Image,
    RoleBegin,
    RoleEnd,
    SamplingParams,
    Select,
    SeparateReasoning,
    Video,
    as_expr,
    describe,
    iter_leaves,
)
from sgl.media import is_url


def function(func: Callable | None = None, num_api_spec_tokens: int | None = None):
    """``@sgl.function`` or ``@sgl.function(num_api_spec_tokens=...)``."""
    if func is not None:
        return SglFunction(func, num_api_spec_tokens=num_api_spec_tokens)

    def decorator(f: Callable) -> SglFunction:
        return SglFunction(f, num_api_spec_tokens=num_api_spec_tokens)

    return decorator


def _as_tuple(x: Any, arg: str, kind: type) -> tuple | None:
    if x is None:
        return None
    items = (x,) if isinstance(x, kind) else tuple(x)
    for item in items:
        if not isinstance(item, kind):
            raise TypeError(f"gen({arg}=...) takes a {kind.__name__} or a list of them, got {item!r}")
    return items


def _check_regex(regex: str | None, arg: str) -> None:
    if regex is None:
        return
    try:
        re.compile(regex)
    except re.error as e:
        raise ValueError(f"gen({arg}={regex!r}): the regex does not compile: {e}") from None


def _schema_str(schema: Any) -> str | None:
    """A JSON schema as a string, from a str, a dict, or a pydantic model class."""
    if schema is None:
        return None
    if isinstance(schema, str):
        try:
            json.loads(schema)
        except json.JSONDecodeError as e:
            raise ValueError(f"gen(json_schema=...): not valid JSON ({e}); pass a JSON string, a dict or a pydantic model") from None
        return schema
    if isinstance(schema, dict):
        return json.dumps(schema)
    if isinstance(schema, type) and hasattr(schema, "model_json_schema"):
        return json.dumps(schema.model_json_schema())
    raise TypeError(f"gen(json_schema=...) takes a JSON string, a dict or a pydantic model class, got {type(schema).__name__}")


def _check_ebnf(ebnf: str | None) -> None:
    """The grammar must parse (llguidance, which the engine compiles it with; no tokenizer)."""
    if ebnf is None:
        return
    if not isinstance(ebnf, str) or not ebnf.strip():
        raise TypeError("gen(ebnf=...) takes a GBNF or Lark grammar as a non-empty str")
    import llguidance

    try:
        is_error, messages = llguidance.LLMatcher.validate_grammar_with_warnings(
            llguidance.grammar_from("grammar", ebnf))
    except (ValueError, RuntimeError) as e:
        is_error, messages = True, [str(e)]
    if is_error:
        raise ValueError(f"gen(ebnf=...): the grammar does not parse: {messages[0][:300]}")


def _check_nonneg(value: Any, arg: str) -> None:
    if value is not None and value < 0:
        raise ValueError(f"gen({arg}={value}) must be >= 0")


def gen(
    name: str | None = None,
    max_tokens: int | None = None,
    min_tokens: int | None = None,
    n: int | None = None,
    stop: str | Sequence[str] | None = None,
    stop_token_ids: Sequence[int] | None = None,
    stop_regex: str | Sequence[str] | None = None,
    temperature: float | None = None,
    top_p: float | None = None,
    top_k: int | None = None,
    min_p: float | None = None,
    frequency_penalty: float | None = None,
    presence_penalty: float | None = None,
    ignore_eos: bool | None = None,
    return_logprob: bool | None = None,
    logprob_start_len: int | None = None,
    top_logprobs_num: int | None = None,
    return_text_in_logprobs: bool | None = None,
    dtype: Any = None,
    choices: Sequence[str] | None = None,
    choices_method: ChoicesSamplingMethod | None = None,
    regex: str | None = None,
    json_schema: Any = None,
    ebnf: str | None = None,
    token_healing: bool | None = None,
) -> Expr:
    """Generate text into variable ``name``; with ``choices`` it is a ``select``. ``ebnf`` (beyond
    SGLang's frontend): a GBNF or Lark grammar the text must match, as the server's field.
    ``token_healing=True`` (beyond SGLang; Guidance has it): the prompt's last token is backed off
    and the first generated token must extend its text, so a prompt ending in ``"http:"`` can go
    on as the model's ``"://"``; not with a constraint (regex=, json_schema=, ebnf=, dtype=)."""
    if choices is not None:
        return select(
            name,
            choices=choices,
            temperature=0.0 if temperature is None else temperature,
            choices_method=choices_method or token_length_normalized,
        )
    if name is not None and not isinstance(name, str):
        raise TypeError(f"gen(name=...) must be a str, got {name!r}")
    if dtype is not None and dtype not in DTYPE_REGEX:
        raise ValueError(f"gen(dtype={dtype!r}) is unknown; use int, float, str or bool")
    _check_regex(regex, "regex")
    _check_ebnf(ebnf)
    for r in _as_tuple(stop_regex, "stop_regex", str) or ():
        _check_regex(r, "stop_regex")
    for value, arg in ((max_tokens, "max_tokens"), (min_tokens, "min_tokens"), (temperature, "temperature"),
                       (logprob_start_len, "logprob_start_len"), (top_logprobs_num, "top_logprobs_num")):  # fmt: skip
        _check_nonneg(value, arg)
    if n is not None and n < 1:
        raise ValueError(f"gen(n={n}) must be >= 1")
    if top_p is not None and not 0 < top_p <= 1:
        raise ValueError(f"gen(top_p={top_p}) must be in (0, 1]")
    if min_p is not None and not 0 <= min_p <= 1:
        raise ValueError(f"gen(min_p={min_p}) must be in [0, 1]")
    if sum(x is not None for x in (regex, json_schema, dtype, ebnf)) > 1:
        raise ValueError("gen: give at most one of regex=, json_schema=, ebnf= and dtype=")
    if token_healing is not None and not isinstance(token_healing, bool):
        raise TypeError(f"gen(token_healing={token_healing!r}) must be True or False")
    if token_healing and any(x is not None for x in (regex, json_schema, dtype, ebnf)):
        raise ValueError("gen(token_healing=True) cannot be combined with regex=, json_schema=, ebnf= or dtype=")
    params = SamplingParams(
        max_new_tokens=max_tokens,
        min_new_tokens=min_tokens,
        n=n,
        stop=_as_tuple(stop, "stop", str),
        stop_token_ids=_as_tuple(stop_token_ids, "stop_token_ids", int),
        stop_regex=_as_tuple(stop_regex, "stop_regex", str),
        temperature=temperature,
        top_p=top_p,
        top_k=top_k,
        min_p=min_p,
        frequency_penalty=frequency_penalty,
        presence_penalty=presence_penalty,
        ignore_eos=ignore_eos,
        return_logprob=return_logprob,
        logprob_start_len=logprob_start_len,
        top_logprobs_num=top_logprobs_num,
        return_text_in_logprobs=return_text_in_logprobs,
        dtype=dtype,
        regex=regex,
        json_schema=_schema_str(json_schema),
        ebnf=ebnf,
        token_healing=token_healing,
    )
    return Gen(name, params)


def gen_int(name: str | None = None, **kwargs: Any) -> Expr:
    return gen(name, dtype=int, **kwargs)


def gen_string(name: str | None = None, **kwargs: Any) -> Expr:
    return gen(name, dtype=str, **kwargs)


def select(
    name: str | None = None,
    choices: Sequence[str] | None = None,
    temperature: float = 0.0,
    choices_method: ChoicesSamplingMethod = token_length_normalized,
) -> Select:
    """Append the choice the model scores highest (no sampling) and store it as ``name``."""
    if choices is None or isinstance(choices, str) or len(choices) == 0:
        raise ValueError("select(choices=...) needs a non-empty list of strings, e.g. choices=['yes', 'no']")
    for c in choices:
        if not isinstance(c, str) or not c:
            raise TypeError(f"select(choices=...): every choice must be a non-empty str, got {c!r}")
    if temperature > 1e-5:
        raise ValueError(f"select(temperature={temperature}): choices are scored, not sampled; use 0")
    if not callable(choices_method):
        raise TypeError("select(choices_method=...) must be a choice method such as sgl.token_length_normalized")
    return Select(name, tuple(choices), float(temperature), choices_method)


def separate_reasoning(expr: Any = None, model_type: str | None = None) -> ExprList:
    """``expr`` (a named ``gen``/``select``, or several), then the thinking split out of each value:
    ``s[name]`` keeps the answer, ``s[name + "_reasoning_content"]`` the thinking, and the state's
    text keeps only the answer. ``model_type``: a reasoning parser's name (``deepseek-r1``,
    ``qwen3``, ``qwen3-thinking``, ``gpt-oss``, ``kimi``, ...), as SGLang's."""
    if not model_type:
        raise ValueError("separate_reasoning(model_type=...) is required, e.g. model_type='deepseek-r1'")
    from sgl.runtime.server.openai_reasoning import get_reasoning_parser

    get_reasoning_parser(model_type, "separate_reasoning(model_type=...):")  # raises with the choices
    if expr is None:
        return ExprList(())
    node = SeparateReasoning(model_type, as_expr(expr))
    for target in iter_leaves(node.expr):
        if isinstance(target, (Gen, Select)) and target.name is None:
            raise ValueError(f"separate_reasoning: {describe(target)} has no name; give the gen a name to split")
    return ExprList((node.expr, node))


def image(source: Any) -> Image:
    """Append an image: a path, bytes, a PIL image, or a URL / data URI."""
    if isinstance(source, str):
        if not is_url(source) and not os.path.exists(source):
            raise FileNotFoundError(f"image({source!r}): no such file; pass a path, URL, data URI, bytes or a PIL image")
    elif not isinstance(source, (bytes, bytearray)) and not hasattr(source, "save"):
        raise TypeError(f"image(...) takes a path, URL, data URI, bytes or a PIL image, got {type(source).__name__}")
    return Image(source)


def video(path: str, num_frames: int) -> Video:
    """Append ``num_frames`` frames sampled evenly over the video at ``path``."""
    if not isinstance(num_frames, int) or num_frames < 1:
        raise ValueError(f"video(num_frames={num_frames!r}) must be a positive int")
    if not os.path.exists(path):
        raise FileNotFoundError(f"video({path!r}): no such file")
    return Video(path, num_frames)


def _role(name: str, expr: object = None) -> ExprList:
    return ExprList((RoleBegin(name), RoleEnd(name)) if expr is None else (RoleBegin(name), expr, RoleEnd(name)))


def system(expr: object = None) -> ExprList:
    return _role("system", expr)


def user(expr: object = None) -> ExprList:
    return _role("user", expr)


def assistant(expr: object = None) -> ExprList:
    return _role("assistant", expr)


def system_begin() -> RoleBegin:
    return RoleBegin("system")


def system_end() -> RoleEnd:
    return RoleEnd("system")


def user_begin() -> RoleBegin:
    return RoleBegin("user")


def user_end() -> RoleEnd:
    return RoleEnd("user")


def assistant_begin() -> RoleBegin:
    return RoleBegin("assistant")


def assistant_end() -> RoleEnd:
    return RoleEnd("assistant")


def set_default_backend(backend: Any) -> None:
    global_config.default_backend = backend


def flush_cache(backend: Any = None) -> Any:
    """Empty the backend's prefix cache; ``False`` when there is no backend."""
    backend = backend or global_config.default_backend
    if backend is None:
        return False
    return backend.flush_cache()


def get_server_info(backend: Any = None) -> dict | None:
    backend = backend or global_config.default_backend
    if backend is None:
        return None
    return backend.get_server_info()
